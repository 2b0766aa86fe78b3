"""Archive and retrieve jobs, from `job.requested` to the job's outcome: one flow, two transfers.

A job starts once (`inProgress`), works on its datasets in parallel (bounded);
each dataset is planned from the datablocks the datablocker recorded, each
datablock is carried (copied, announced with `lts.moved`, verified), and the
job finishes once every dataset is decided. What differs between archive and
retrieve is a `Transfer` (`moving.ArchiveTransfer`, `retrieving.RetrieveTransfer`):
where the bytes go, whether a copy is shared between jobs, whether a verified
copy must first be put in place. What SciCat is told about a dataset follows from
the job record alone (`contracts.jobs.started_lifecycle` / `decided_lifecycle`),
so scicat_sync can check every lifecycle event against it. The flow decides; a
transfer only moves and removes bytes and keeps its copy records.

Every step is recorded in the job's KV record (`job_records`) before its event is
published, and events re-published after a crash carry the recorded timestamps,
so a redelivered message repeats nothing and regresses nothing.

A person may cancel a job (the gateway records who and when in the job's record,
then announces `job.cancel_requested`): work stops at the next safe point (before
a copy, inside a copy between chunks, after a copy), every undecided dataset fails
with "Cancelled by <who> at <when>", what the job wrote of it goes (`withdraw`),
and the job ends `finishedUnsuccessful`. Only the record's word counts.

Entry points: `run_job` (`job.requested`), `record_verification` (`lts.verified`) and
`cancel_job` (`job.cancel_requested`).
"""

import asyncio
import threading
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Literal, Protocol

import structlog

from contracts import subjects
from contracts.events import (
    Datablock,
    DatasetLifecycleChanged,
    Event,
    JobCancelRequested,
    JobRequested,
    JobStatusChanged,
    LtsMoved,
    LtsVerified,
)
from contracts.jobs import (
    DatablockProgress,
    DatasetProgress,
    JobRecord,
    decided_lifecycle,
    started_lifecycle,
)
from runtime import metrics
from runtime.settling import PermanentError
from services.ltsmover import job_records as steps
from services.ltsmover.job_records import DatasetFailed, WorkingState
from services.ltsmover.jobstate import DatablockRecords, JobStore
from services.ltsmover.stopping import CopyStopped, watch_cancel

log = structlog.get_logger(__name__)

Emit = Callable[[str, Event], Awaitable[None]]
"""Publishes an event on a subject with its dedup id."""

RecordWorking = Callable[[WorkingState, str | None], Awaitable[None]]
"""Records what the dataset being copied waits for (a message for a person), or None: working."""


@dataclass(frozen=True)
class Claimed:
    """How a job carries a datablock not yet moved, as its transfer decided."""

    how: Literal["copy", "wait", "recheck", "reuse"]
    """`copy`: this job copies it; `wait`: another job copies it and passes on its verdict;
    `recheck`: a copy is there already and is verified again; `reuse`: a verified copy is there."""
    attempt: int
    """The copy attempt the datablock's record refers to."""


class Transfer(Protocol):
    """What one job type does with bytes and copy records; the flow calls, it never calls back."""

    job_type: Literal["archive", "retrieve"]
    working: str
    """The job's status message while it runs: "{working} {n} dataset(s)"."""
    outcome: str
    """What a succeeded dataset is: "{k} of {n} dataset(s) {outcome}", log `dataset.{outcome}`."""
    checked_where: str
    """Where a copy is verified, for a failure reason: "failed verification {checked_where}"."""

    def no_datablocks(self, pid: str) -> DatasetFailed:
        """Why a dataset with no datablocks on record fails."""
        ...

    def location(self, job_id: str, pid: str, archive_id: str, attempt: int) -> str:
        """Where the job's copy attempt of `archive_id` lives (the `lts.moved` location)."""
        ...

    async def claim(
        self, job_id: str, pid: str, block: Datablock, progress: DatablockProgress, now: datetime
    ) -> Claimed:
        """Decide how the job carries a datablock not yet moved (recording a shared claim)."""
        ...

    async def write(
        self,
        job_id: str,
        pid: str,
        block: Datablock,
        attempt: int,
        record_working: RecordWorking,
        stop: threading.Event,
    ) -> None:
        """Copy the datablock's bytes (waits bounded); `DatasetFailed` if it cannot,
        `CopyStopped` (nothing of the copy left) once `stop` is set."""
        ...

    async def written(self, job_id: str, archive_id: str, attempt: int) -> bool:
        """Record the job's copy as written; whether no other job waits for it."""
        ...

    async def abandon(self, job_id: str, archive_id: str) -> tuple[str, ...]:
        """Remove the job's unverified copy; the other jobs that waited for it."""
        ...

    async def discard(self, job_id: str, pid: str, block: DatablockProgress) -> None:
        """Remove what the job copied of a datablock its dataset no longer needs."""
        ...

    async def withdraw(self, job_id: str, pid: str, block: DatablockProgress) -> None:
        """Remove everything the job wrote of a datablock of a cancelled dataset (its record
        says what it wrote), where the datablock's source still holds it."""
        ...

    async def replaceable(self, job_id: str, block: DatablockProgress) -> bool | None:
        """Whether the verified copy of `block`'s attempt must be put in place first: None if
        not (it is where it belongs), True if it is there to be, False if it is gone."""
        ...

    async def replace(self, job_id: str, block: DatablockProgress) -> None:
        """Put the verified copy in place; a copy that is gone already was (idempotent)."""
        ...

    async def accept(self, event: LtsVerified, now: datetime) -> Mapping[str, int | None]:
        """Record a verified copy; the jobs it verifies, each with the attempt their datablock
        must be moved at (None: any); none if the verdict is stale."""
        ...

    async def reject(self, event: LtsVerified, ds: DatasetProgress) -> tuple[str, ...] | None:
        """Take note of a copy that failed verification (removing it if it is shared); the other
        jobs that wait for it, or None if there is nothing to do (a stale verdict)."""
        ...

    async def recopy(self, event: LtsVerified, now: datetime) -> None:
        """Prepare the next attempt at a copy that failed verification."""
        ...

    def succeeded_event(
        self, job_id: str, ds: DatasetProgress, at: datetime
    ) -> tuple[str, Event] | None:
        """What is announced besides the lifecycle when a dataset succeeded (subject, event)."""
        ...


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class JobFlow:
    """One job type's parts, built once at start-up and shared by the ltsmover's handlers."""

    jobs: JobStore
    datablocks: DatablockRecords
    transfer: Transfer
    emit: Emit
    max_parallel_datasets: int
    """Datasets of one job worked on at once."""
    max_copy_attempts: int
    """Copies of one datablock tried before its dataset fails."""
    clock: Callable[[], datetime] = utc_now
    cancel_poll_s: float = 2.0
    """How often a running copy looks at its job's record for a cancel request."""


def unrecorded_verdict(event: LtsVerified, what: str) -> PermanentError:
    """A verdict on `what` (a job, a datablock) that ltsmover has no record of.

    Job records are never deleted: such a verdict belongs to no job we ran.
    """
    reason = f"Verification result for {what}, which ltsmover has no record of"
    return PermanentError(reason, f"location {event.location}, attempt {event.attempt}")


# -- job.requested ---------------------------------------------------------------------


async def run_job(job: JobRequested, flow: JobFlow) -> None:
    """Carry every dataset of the job (in parallel, bounded); lts.moved per datablock."""
    record = await flow.jobs.ensure(job)
    if record.finished:
        await _announce_job(flow, record)
        return
    start = partial(steps.start_job, working=flow.transfer.working, now=flow.clock())
    record, _ = await flow.jobs.change(job.job_id, start)
    await flow.emit(
        subjects.JOB_STATUS,
        JobStatusChanged(
            occurred_at=record.started_at or flow.clock(),
            correlation_id=job.correlation_id,
            job_id=job.job_id,
            status_code="inProgress",
            status_message=record.status_message,
        ),
    )
    slots = asyncio.Semaphore(flow.max_parallel_datasets)

    async def one(pid: str) -> None:
        async with slots:
            await _carry_dataset(flow, job.job_id, pid)

    outcomes = await asyncio.gather(*(one(pid) for pid in record.datasets), return_exceptions=True)
    await _finish_if_decided(flow, job.job_id)
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome


async def _carry_dataset(flow: JobFlow, job_id: str, pid: str) -> None:
    """Announce the dataset started, plan its datablocks and carry them (in parallel)."""
    _, ds = await flow.jobs.change(job_id, partial(steps.start_dataset, pid=pid, now=flow.clock()))
    if ds.decided:
        await _announce_dataset(flow, job_id, ds)
        return
    # The datablocks are read while the stream stores the announcement (one wait, not two).
    _, created = await asyncio.gather(
        flow.emit(
            subjects.DATASET_LIFECYCLE,
            DatasetLifecycleChanged(
                occurred_at=ds.started_at or flow.clock(),
                pid=pid,
                job_id=job_id,
                lifecycle=started_lifecycle(flow.transfer.job_type),
            ),
        ),
        flow.datablocks.datablocks_of(pid),
    )
    if created is None:
        await _fail_dataset(flow, job_id, pid, flow.transfer.no_datablocks(pid))
        return
    _, ds = await flow.jobs.change(
        job_id, partial(steps.plan_dataset, pid=pid, blocks=created.datablocks)
    )
    try:
        await asyncio.gather(
            *(
                _carry_block(flow, job_id, pid, block, ds.datablocks[block.archive_id])
                for block in created.datablocks
            )
        )
    except DatasetFailed as failure:
        await _fail_dataset(flow, job_id, pid, failure)


async def _carry_block(
    flow: JobFlow, job_id: str, pid: str, block: Datablock, progress: DatablockProgress
) -> None:
    """Copy one datablock, or take a copy that is there, or wait for another job's copy."""
    if progress.state in ("verified", "failed"):
        return
    if progress.state == "moved":
        await _announce_moved(flow, job_id, pid, block, progress.attempt)
        return
    claimed = await flow.transfer.claim(job_id, pid, block, progress, flow.clock())
    if claimed.how == "copy":
        await _copy_block(flow, job_id, pid, block, claimed.attempt)
    elif claimed.how == "wait":
        # Another job copies it; its verdict decides this job's datablock too.
        await _record_copy(
            flow, job_id, pid, block.archive_id, "copying", claimed.attempt, copied=False
        )
    elif claimed.how == "recheck":
        # An earlier job's copy: not copied again, only verified again.
        await _record_copy(
            flow, job_id, pid, block.archive_id, "moved", claimed.attempt, copied=False
        )
        await _announce_moved(flow, job_id, pid, block, claimed.attempt)
    else:
        # A verified copy that lasts long enough.
        await _record_copy(
            flow, job_id, pid, block.archive_id, "moved", claimed.attempt, copied=False
        )
        await _block_verified(flow, job_id, pid, block.archive_id, attempt=None)


async def _copy_block(flow: JobFlow, job_id: str, pid: str, block: Datablock, attempt: int) -> None:
    """Copy one datablock and announce it; `DatasetFailed` if it cannot be copied, or if the
    job was cancelled (looked at before, during and after the copy)."""
    await _stop_if_cancelled(flow, job_id)
    await _record_copy(flow, job_id, pid, block.archive_id, "copying", attempt, copied=True)

    async def record_working(state: WorkingState, message: str | None) -> None:
        await flow.jobs.change(
            job_id, partial(steps.record_working, pid=pid, state=state, message=message)
        )

    async def cancelled() -> bool:
        record = await flow.jobs.get(job_id)
        return record is not None and record.cancel_reason is not None

    try:
        async with watch_cancel(cancelled, flow.cancel_poll_s) as stop:
            await flow.transfer.write(job_id, pid, block, attempt, record_working, stop)
    except DatasetFailed as failure:
        await _abandon_copy(flow, job_id, pid, block.archive_id, failure.reason)
        raise
    except CopyStopped:
        log.info("datablock.copy_stopped", archive_id=block.archive_id, attempt=attempt)
        await _abandon_copy(flow, job_id, pid, block.archive_id, "the job was cancelled")
        await _stop_if_cancelled(flow, job_id)
        raise
    alone = await flow.transfer.written(job_id, block.archive_id, attempt)
    record = await _record_copy(flow, job_id, pid, block.archive_id, "moved", attempt)
    ds = record.datasets[pid]
    if ds.decided and alone:
        # The dataset failed while this block was copied and no other job wants the copy.
        await _drop(flow, record, pid, ds.datablocks[block.archive_id])
        return
    await _stop_if_cancelled(flow, job_id)
    await _announce_moved(flow, job_id, pid, block, attempt)


async def _stop_if_cancelled(flow: JobFlow, job_id: str) -> None:
    """A safe point: `DatasetFailed` with the record's "Cancelled by ..." if the job was."""
    record = await flow.jobs.get(job_id)
    if record is not None and (reason := record.cancel_reason) is not None:
        raise DatasetFailed("system", reason)


async def _drop(flow: JobFlow, record: JobRecord, pid: str, block: DatablockProgress) -> None:
    """Remove what the job copied of a datablock its decided dataset no longer needs: all it
    wrote if the job was cancelled, else only what is never kept (`Transfer.discard`)."""
    if record.cancel_reason is not None:
        await flow.transfer.withdraw(record.job_id, pid, block)
    else:
        await flow.transfer.discard(record.job_id, pid, block)


# -- lts.verified -----------------------------------------------------------------------


async def record_verification(event: LtsVerified, flow: JobFlow) -> None:
    """Act on the verifier's verdict on a copy; then finish the job if every dataset is decided.

    A good copy verifies the datablock of every job that wants it (a re-copy is
    first put in the place of the copy it replaces). A bad one is copied again, up
    to `max_copy_attempts` copies; then the dataset fails, and so do the datasets
    of the jobs that waited for the copy.
    """
    record = await flow.jobs.get(event.job_id)
    if record is None:
        raise unrecorded_verdict(event, f"job {event.job_id}")
    ds = record.datasets.get(event.pid)
    if ds is None or event.archive_id not in ds.datablocks:
        what = f"datablock {event.archive_id} of dataset {event.pid} in job {event.job_id}"
        raise unrecorded_verdict(event, what)
    transfer = flow.transfer
    next_attempt = event.attempt + 1
    if event.ok and not await _put_in_place(flow, event, ds):
        log.warning("datablock.recopy_gone", archive_id=event.archive_id, attempt=event.attempt)
        gone = "the verified re-copy was gone before it replaced the copy"
        event = event.model_copy(update={"ok": False, "reason": gone})
    if event.ok:
        for job_id, attempt in (await transfer.accept(event, flow.clock())).items():
            await _block_verified(flow, job_id, event.pid, event.archive_id, attempt=attempt)
            if job_id != event.job_id:
                await _finish_if_decided(flow, job_id)
    elif (waiting := await transfer.reject(event, ds)) is None:
        pass  # a verdict on a copy that was replaced, or on a dataset decided before
    elif ds.decided and not waiting:
        # Nobody wants the copy any more.
        await _drop(flow, record, event.pid, ds.datablocks[event.archive_id])
    elif next_attempt >= flow.max_copy_attempts:
        await _record_copy(
            flow,
            event.job_id,
            event.pid,
            event.archive_id,
            "failed",
            event.attempt,
            reason=event.reason,
        )
        reason = (
            f"Datablock {event.archive_id} failed verification {transfer.checked_where} "
            f"{flow.max_copy_attempts} time(s): {event.reason}"
        )
        await _give_up(flow, event.job_id, event.pid, event.archive_id, reason)
    elif (block := await _recorded_datablock(flow, event.pid, event.archive_id)) is None:
        reason = f"Datablock {event.archive_id} is no longer recorded for dataset {event.pid}"
        await _give_up(flow, event.job_id, event.pid, event.archive_id, reason)
    else:
        await transfer.recopy(event, flow.clock())
        try:
            await _copy_block(flow, event.job_id, event.pid, block, next_attempt)
        except DatasetFailed as failure:
            await _fail_dataset(flow, event.job_id, event.pid, failure)
    await _finish_if_decided(flow, event.job_id)


async def _put_in_place(flow: JobFlow, event: LtsVerified, ds: DatasetProgress) -> bool:
    """Put the job's verified copy in place before anyone hears it verified; False if it is gone.

    The job's record notes the replacement first, so a redelivery that finds the
    copy gone knows it was put in place (not lost) and goes on.
    """
    block = ds.datablocks[event.archive_id]
    if ds.decided or block.state != "moved" or block.attempt != event.attempt:
        return True  # a stale verdict; nothing of it is acted on
    if not block.replacing:
        ready = await flow.transfer.replaceable(event.job_id, block)
        if ready is None:
            return True
        if not ready:
            return False
        step = partial(
            steps.record_replacing,
            pid=event.pid,
            archive_id=event.archive_id,
            attempt=block.attempt,
        )
        await flow.jobs.change(event.job_id, step)
    await flow.transfer.replace(event.job_id, block)
    return True


async def _recorded_datablock(flow: JobFlow, pid: str, archive_id: str) -> Datablock | None:
    created = await flow.datablocks.datablocks_of(pid)
    recorded = created.datablocks if created else ()
    return next((b for b in recorded if b.archive_id == archive_id), None)


async def _give_up(flow: JobFlow, job_id: str, pid: str, archive_id: str, reason: str) -> None:
    """The copy goes; the dataset fails, and so do those of the jobs that waited for the copy."""
    await _abandon_copy(flow, job_id, pid, archive_id, reason)
    await _fail_dataset(flow, job_id, pid, DatasetFailed("system", reason))


# -- job.cancel_requested ---------------------------------------------------------------


async def cancel_job(event: JobCancelRequested, flow: JobFlow) -> None:
    """End a job a person cancelled, as its record says: every undecided dataset fails with
    "Cancelled by <who> at <when>" (what the job wrote of it goes), the job finishes
    `finishedUnsuccessful`. Copies running elsewhere stop at their next safe point.

    Idempotent: a redelivery fails nothing new and announces the same outcome again.
    """
    record = await flow.jobs.get(event.job_id)
    if record is None:
        reason = f"Cancel request for job {event.job_id}, which ltsmover has no record of"
        raise PermanentError(reason, f"requested by {event.requested_by}")
    cancelled = record.cancel_reason
    if cancelled is None:
        reason = (
            f"Cancel request for job {event.job_id}, whose record says nobody asked to cancel it"
        )
        raise PermanentError(reason, f"the event claims {event.requested_by}")
    failure = DatasetFailed("system", cancelled)
    for pid, ds in record.datasets.items():
        if not ds.decided or ds.error == cancelled:
            await _fail_dataset(flow, event.job_id, pid, failure)
    await _finish_if_decided(flow, event.job_id)
    log.info("job.cancelled", job_id=event.job_id, reason=cancelled)


# -- outcomes ---------------------------------------------------------------------------


async def _block_verified(
    flow: JobFlow, job_id: str, pid: str, archive_id: str, *, attempt: int | None
) -> None:
    step = partial(
        steps.record_verified, pid=pid, archive_id=archive_id, attempt=attempt, now=flow.clock()
    )
    try:
        _, done = await flow.jobs.change(job_id, step)
    except LookupError:
        log.warning("retrieval.unknown_job", waiting_job=job_id)
        return
    if done is not None:
        metrics.count_dataset_finished(flow.transfer.job_type, "succeeded", None)
        await _announce_dataset(flow, job_id, done)


async def _abandon_copy(flow: JobFlow, job_id: str, pid: str, archive_id: str, reason: str) -> None:
    """Remove the job's unverified copy; the jobs that waited for it fail with `reason`."""
    for waiting in await flow.transfer.abandon(job_id, archive_id):
        await _fail_dataset(flow, waiting, pid, DatasetFailed("system", reason))
        await _finish_if_decided(flow, waiting)


async def _fail_dataset(flow: JobFlow, job_id: str, pid: str, failure: DatasetFailed) -> None:
    now = flow.clock()

    def fail(record: JobRecord) -> tuple[DatasetProgress | None, bool]:
        """The dataset, and whether this change decided it (it may be re-applied)."""
        before = record.datasets.get(pid)
        undecided = before is not None and not before.decided
        return steps.fail_dataset(record, pid, failure, now=now), undecided

    try:
        record, (ds, decided_now) = await flow.jobs.change(job_id, fail)
    except LookupError:
        return
    if ds is None:
        return
    if decided_now:
        metrics.count_dataset_finished(flow.transfer.job_type, "failed", ds.error_kind)
    log.warning(
        "dataset.failed",
        job_type=flow.transfer.job_type,
        dataset=pid,
        kind=ds.error_kind,
        reason=ds.error,
    )
    for block in ds.datablocks.values():
        await _drop(flow, record, pid, block)
    await _announce_dataset(flow, job_id, ds)


async def _announce_dataset(flow: JobFlow, job_id: str, ds: DatasetProgress) -> None:
    lifecycle = decided_lifecycle(flow.transfer.job_type, ds)
    if lifecycle is None:
        return
    occurred_at = ds.decided_at or flow.clock()
    await flow.emit(
        subjects.DATASET_LIFECYCLE,
        DatasetLifecycleChanged(
            occurred_at=occurred_at, pid=ds.pid, job_id=job_id, lifecycle=lifecycle
        ),
    )
    if ds.state == "succeeded":
        also = flow.transfer.succeeded_event(job_id, ds, occurred_at)
        if also is not None:
            await flow.emit(*also)
        log.info(f"dataset.{flow.transfer.outcome}", dataset=ds.pid, bytes=ds.bytes_total)


async def _finish_if_decided(flow: JobFlow, job_id: str) -> None:
    now = flow.clock()

    def finish(record: JobRecord) -> bool:
        """Whether this change finished the job (it may be re-applied)."""
        finished_before = record.finished
        steps.finish_job(record, outcome=flow.transfer.outcome, now=now)
        return record.finished and not finished_before

    try:
        record, finished_now = await flow.jobs.change(job_id, finish)
    except LookupError:
        return
    if finished_now:
        metrics.count_job_finished(flow.transfer.job_type, record.status)
    if record.finished:
        await _announce_job(flow, record)


async def _announce_job(flow: JobFlow, record: JobRecord) -> None:
    await flow.emit(
        subjects.JOB_STATUS,
        JobStatusChanged(
            occurred_at=record.finished_at or flow.clock(),
            job_id=record.job_id,
            status_code=record.status,
            status_message=record.status_message,
        ),
    )
    log.info("job.finished", job_id=record.job_id, status=record.status)


# -- small steps ------------------------------------------------------------------------


async def _announce_moved(
    flow: JobFlow, job_id: str, pid: str, block: Datablock, attempt: int
) -> None:
    await flow.emit(
        subjects.LTS_MOVED,
        LtsMoved(
            occurred_at=flow.clock(),
            job_id=job_id,
            job_type=flow.transfer.job_type,
            pid=pid,
            datablock=block,
            location=flow.transfer.location(job_id, pid, block.archive_id, attempt),
            attempt=attempt,
        ),
    )


async def _record_copy(
    flow: JobFlow,
    job_id: str,
    pid: str,
    archive_id: str,
    state: Literal["copying", "moved", "failed"],
    attempt: int,
    *,
    reason: str | None = None,
    copied: bool | None = None,
) -> JobRecord:
    step = partial(
        steps.record_copy,
        pid=pid,
        archive_id=archive_id,
        state=state,
        attempt=attempt,
        reason=reason,
        copied=copied,
    )
    record, _ = await flow.jobs.change(job_id, step)
    return record
