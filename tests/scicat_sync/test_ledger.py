"""The applied ledger on the real nats-server: claims per field, and the JSON it keeps."""

import json
from datetime import UTC, datetime

from nats.js import JetStreamContext

from contracts import kv
from services.scicat_sync.ledger import AppliedLedger

T0 = datetime(2025, 3, 1, 11, 59, 0, tzinfo=UTC)
T1 = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
T2 = datetime(2025, 3, 1, 12, 0, 5, tzinfo=UTC)
KEY = "lifecycle.abc"

STORED = {
    "archivable": {"at": "2025-03-01T12:00:00+00:00", "value": True},
    "archiveStatusMessage": {"at": "2025-03-01T12:00:00+00:00", "value": "datasetCreated"},
}
"""A key as the ledger has always written it (what is in the bucket today must still read)."""


async def stored(js: JetStreamContext, key: str) -> object:
    entry = await (await js.key_value(kv.SCICAT_SYNC_APPLIED)).get(key)
    return json.loads(entry.value or b"")


async def test_claims_are_stored_per_field_as_at_and_value(
    clean_js: JetStreamContext, ledger: AppliedLedger
) -> None:
    """A claim keeps, per field, the event time (ISO, with offset) and the value written."""
    fresh = await ledger.claim(KEY, T1, {"archivable": True, "archiveStatusMessage": "x"})

    assert fresh == {"archivable": True, "archiveStatusMessage": "x"}
    assert await stored(clean_js, KEY) == {
        "archivable": {"at": "2025-03-01T12:00:00+00:00", "value": True},
        "archiveStatusMessage": {"at": "2025-03-01T12:00:00+00:00", "value": "x"},
    }


async def test_existing_claims_decide_older_equal_and_newer_events(
    clean_js: JetStreamContext, ledger: AppliedLedger
) -> None:
    """Over a key already in the bucket: older skips, equal time re-applies, newer wins."""
    bucket = await clean_js.key_value(kv.SCICAT_SYNC_APPLIED)
    await bucket.put(KEY, json.dumps(STORED).encode())

    assert await ledger.claim(KEY, T0, {"archiveStatusMessage": "stale"}) == {}
    assert await ledger.claim(KEY, T1, {"archivable": True}) == {"archivable": True}
    assert await ledger.claim(KEY, T2, {"archiveStatusMessage": "datasetOnArchiveDisk"}) == {
        "archiveStatusMessage": "datasetOnArchiveDisk"
    }
    assert await ledger.claimed_after(KEY, T1, ["archivable", "archiveStatusMessage"]) == {
        "archiveStatusMessage": "datasetOnArchiveDisk"
    }
    assert await stored(clean_js, KEY) == {
        "archivable": {"at": "2025-03-01T12:00:00+00:00", "value": True},
        "archiveStatusMessage": {
            "at": "2025-03-01T12:00:05+00:00",
            "value": "datasetOnArchiveDisk",
        },
    }


async def test_markers_are_remembered_recalled_and_forgotten(
    clean_js: JetStreamContext, ledger: AppliedLedger
) -> None:
    """A marker is kept as the plain JSON object given; a forgotten one recalls as None."""
    await ledger.remember("archive_job.abc", {"attempted_at": "2025-03-01T12:00:00+00:00"})

    assert await stored(clean_js, "archive_job.abc") == {
        "attempted_at": "2025-03-01T12:00:00+00:00"
    }
    assert await ledger.recall("archive_job.abc") == {"attempted_at": "2025-03-01T12:00:00+00:00"}
    await ledger.forget("archive_job.abc")
    assert await ledger.recall("archive_job.abc") is None
