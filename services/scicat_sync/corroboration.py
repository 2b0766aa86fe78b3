"""Each event checked against the records of the service that made it, before SciCat is written.

scicat_sync writes through the archiver's SciCat account, which may change any
group's datasets and jobs; an event is only a claim. Each check below compares
the event with what the producing service recorded in KV (`records`), and
raises `PermanentError` (dead-lettered with the reason, nothing written) when
they disagree. A forged event can then at most repeat what the records say.
Pure functions: the caller reads the records.
"""

from contracts.events import (
    DatablocksCreated,
    DatasetLifecycleChanged,
    DatasetPackingFailed,
    JobStatusChanged,
)
from contracts.jobs import JobRecord, lifecycle_at
from contracts.scicat import FINAL_JOB_STATUS_CODES
from runtime.settling import PermanentError

NOTHING_WRITTEN = "nothing was written to SciCat"


def check_datablocks_created(event: DatablocksCreated, packed: DatablocksCreated | None) -> None:
    """The event must be what the datablocker recorded for the dataset, datablocks included."""
    if packed is None:
        reason = (
            f"datablocks.created for {event.pid}: the datablocker has no record of packing it; "
            f"{NOTHING_WRITTEN}"
        )
        raise PermanentError(reason)
    if packed != event:
        reason = (
            f"datablocks.created for {event.pid} differs from what the datablocker recorded "
            f"(packed at {packed.occurred_at.isoformat()}); {NOTHING_WRITTEN}"
        )
        raise PermanentError(reason)


def check_packing_failed(event: DatasetPackingFailed, failed: DatasetPackingFailed | None) -> None:
    """The event must be the packing failure the datablocker recorded last for the dataset."""
    if failed != event:
        known = "has no record of" if failed is None else "recorded another"
        reason = (
            f"dataset.packing_failed for {event.pid}: the datablocker {known} packing failure; "
            f"{NOTHING_WRITTEN}"
        )
        raise PermanentError(reason)


def check_lifecycle(event: DatasetLifecycleChanged, record: JobRecord | None) -> None:
    """The event's job must list the dataset and have recorded this very change at this time."""
    what = f"dataset.lifecycle for {event.pid} (job {event.job_id})"
    if record is None:
        reason = f"{what}: the archiver has no record of the job; {NOTHING_WRITTEN}"
        raise PermanentError(reason)
    if event.pid not in record.datasets:
        reason = f"{what}: the job's record does not list the dataset; {NOTHING_WRITTEN}"
        raise PermanentError(reason)
    recorded = lifecycle_at(record, event.pid, event.occurred_at)
    if recorded is None or recorded.to_scicat() != event.lifecycle.to_scicat():
        reason = (
            f"{what}: the job's record has no such change at {event.occurred_at.isoformat()}; "
            f"{NOTHING_WRITTEN}"
        )
        detail = (
            f"claimed {event.lifecycle.to_scicat()}, recorded {recorded and recorded.to_scicat()}"
        )
        raise PermanentError(reason, detail[:2000])


def job_status_to_write(event: JobStatusChanged, record: JobRecord | None) -> bool:
    """Whether to write the event's status: it must be the job's recorded status at that time.

    False for a start that the record has since overtaken (the job finished: its
    final status is what SciCat should show); PermanentError for a status the
    record never had.
    """
    what = f"job.status {event.status_code} for job {event.job_id}"
    if record is None:
        reason = f"{what}: the archiver has no record of the job; {NOTHING_WRITTEN}"
        raise PermanentError(reason)
    if event.status_code not in FINAL_JOB_STATUS_CODES and record.finished:
        return False
    recorded_at = record.finished_at if record.finished else record.started_at
    claimed = (event.status_code, event.status_message, event.occurred_at)
    if claimed != (record.status, record.status_message, recorded_at):
        reason = (
            f"{what}: the job's record says {record.status} "
            f"({'since ' + recorded_at.isoformat() if recorded_at else 'not started'}); "
            f"{NOTHING_WRITTEN}"
        )
        raise PermanentError(reason)
    return True
