"""The committed subjects document is what the contracts say today."""

from pathlib import Path

from contracts.document import render_subjects_markdown

DOC = Path(__file__).parents[2] / "docs" / "subjects.md"


def test_committed_subjects_doc_is_current() -> None:
    """Regenerate with `make subjects-doc` when this fails."""
    assert DOC.read_text() == render_subjects_markdown()


def test_doc_names_every_mission_subject() -> None:
    """The five subjects of the mission are documented by name."""
    text = DOC.read_text()
    for subject in ("upload.finished", "datablocks.created", "lts.moved", "lts.verified"):
        assert f"`{subject}`" in text
    assert "`job.status`" in text
