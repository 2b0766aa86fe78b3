"""Event models are strict: a drifting producer fails loudly at the consumer."""

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from contracts.events import UploadFinished
from contracts.kv import id_key, key_id
from contracts.scicat import LifecyclePatch

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def test_unknown_fields_are_rejected() -> None:
    with pytest.raises(ValidationError, match="extra"):
        UploadFinished.model_validate(
            {
                "occurred_at": NOW,
                "pid": "20.500.11935/x",
                "owner_group": "g",
                "create_archiving_job": True,
                "source": "finalize",
                "surprise": 1,
            }
        )


def test_naive_timestamps_are_rejected() -> None:
    """Ordering across services relies on aware timestamps."""
    with pytest.raises(ValidationError):
        UploadFinished(
            occurred_at=datetime(2026, 1, 1),
            pid="p/1",
            owner_group="g",
            create_archiving_job=False,
            source="finalize",
        )


def test_schema_version_travels_with_every_event() -> None:
    event = UploadFinished(
        occurred_at=NOW, pid="p/1", owner_group="g", create_archiving_job=False, source="finalize"
    )
    assert '"schema_version":1' in event.model_dump_json()


def test_finalize_and_notification_share_one_dedup_id() -> None:
    """Both doors announce the same upload; the stream keeps one."""
    common = {"occurred_at": NOW, "pid": "p/1", "owner_group": "g", "create_archiving_job": False}
    assert (
        UploadFinished(**common, source="finalize").dedup_id()
        == UploadFinished(**common, source="notification").dedup_id()
    )


def test_a_lifecycle_patch_sends_only_what_was_set() -> None:
    """The reference's PATCH defaults wiped fields; ours carry exactly the fields set."""
    patch = LifecyclePatch(archiveStatusMessage="started", archivable=False)
    assert patch.to_scicat() == {"archiveStatusMessage": "started", "archivable": False}


def test_kv_keys_round_trip_pids_with_slashes() -> None:
    key = id_key("20.500.11935/0b6f-41")
    assert "/" not in key
    assert "=" not in key
    assert key_id(key) == "20.500.11935/0b6f-41"


def test_a_lifecycle_patch_survives_the_bus_without_nulls() -> None:
    """Decoded from JSON every field counts as set; nulls still never reach SciCat."""
    from contracts.events import DatasetLifecycleChanged

    event = DatasetLifecycleChanged(
        occurred_at=NOW, pid="p/1", job_id="j-1", lifecycle=LifecyclePatch(archivable=True)
    )
    decoded = DatasetLifecycleChanged.model_validate_json(event.model_dump_json(by_alias=True))
    assert decoded.lifecycle.to_scicat() == {"archivable": True}
