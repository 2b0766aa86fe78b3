"""Waiting for the archiver's decisions, as SciCat records them (bounded, explained on timeout)."""

from typing import Any

from tests.e2e.stack_clients import StackClients
from tests.polling import eventually_sync

PACKING_OUTCOMES = frozenset({"datasetCreated", "missingFilesError", "scheduleArchiveJobFailed"})


def packing_outcome(clients: StackClients, pid: str, timeout_s: float = 30) -> dict[str, Any]:
    """The dataset's lifecycle once the archiver wrote packing's outcome to SciCat.

    A new dataset's lifecycle already says `datasetCreated` (SciCat's default), so
    the write history, not the lifecycle, tells when the archiver decided.
    """

    def decided() -> dict[str, Any] | None:
        for write in clients.scicat.lifecycle_writes(pid):
            if write["body"].get("archiveStatusMessage") in PACKING_OUTCOMES:
                return clients.scicat.lifecycle(pid)
        return None

    return eventually_sync(
        decided,
        f"packing outcome of {pid} in SciCat",
        timeout_s=timeout_s,
        interval_s=0.25,
        explain=lambda: clients.explain(pids=(pid,)),
    )


def finished_job(
    clients: StackClients, job_id: str, pids: tuple[str, ...], timeout_s: float = 60
) -> dict[str, Any]:
    """The SciCat job once its status is final."""
    return eventually_sync(
        lambda: clients.scicat.finished_job(job_id),
        f"final status of job {job_id} in SciCat",
        timeout_s=timeout_s,
        interval_s=0.25,
        explain=lambda: clients.explain(job_id=job_id, pids=pids),
    )


ARCHIVE_OUTCOMES = frozenset(
    {"datasetOnArchiveDisk", "missingFilesError", "scheduleArchiveJobFailed"}
)


def archive_outcome(
    clients: StackClients,
    pid: str,
    job_id: str,
    *,
    since_index: int = 0,
    timeout_s: float = 30,
) -> dict[str, Any]:
    """The dataset's lifecycle once an archive job's outcome for it reached SciCat.

    That is a lifecycle write with a final archive status after a `started`
    one, both at or after `since_index` in SciCat's write history. SciCat may
    show the job finished a moment before this: the job status and the
    lifecycle are separate writes.
    """

    def decided() -> dict[str, Any] | None:
        started = False
        for write in clients.scicat.lifecycle_writes(pid):
            if write["index"] < since_index:
                continue
            status = write["body"].get("archiveStatusMessage")
            started = started or status == "started"
            if started and status in ARCHIVE_OUTCOMES:
                return clients.scicat.lifecycle(pid)
        return None

    return eventually_sync(
        decided,
        f"archive outcome of {pid} (job {job_id}) in SciCat",
        timeout_s=timeout_s,
        interval_s=0.25,
        explain=lambda: clients.explain(job_id=job_id, pids=(pid,)),
    )
