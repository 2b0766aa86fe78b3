"""The committed configuration reference lists every variable the services read."""

from pathlib import Path

from archiver.configuration import render_configuration_markdown

DOC = Path(__file__).parents[1] / "docs" / "configuration.md"


def test_committed_configuration_doc_is_current() -> None:
    """Regenerate with `archiver config-doc --output docs/configuration.md` when this fails."""
    assert DOC.read_text() == render_configuration_markdown()


def test_required_settings_are_marked_required() -> None:
    text = DOC.read_text()
    assert "| `GATEWAY_JOB_PASSWORD` | SecretStr | **required** |" in text
    assert "| `S3_ENDPOINT` |" in text
