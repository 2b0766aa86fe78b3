"""What the gateway announces on the bus: finished uploads, requested jobs, and people's cancel
and retry requests; one log line each."""

from dataclasses import dataclass

import structlog

from contracts import subjects
from contracts.events import (
    Event,
    JobCancelRequested,
    JobRequested,
    JobRetryRequested,
    UploadFinished,
)
from runtime.publishing import BusUnavailable, PubAck
from runtime.service_bus import Bus
from services.gateway.errors import DependencyDown

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Announcer:
    bus: Bus

    async def _publish(self, subject: str, event: Event) -> PubAck:
        """Publish; a bus that stores nothing now (failover, outage) is a 503, never a 500."""
        try:
            return await self.bus.publish(subject, event)
        except BusUnavailable as exc:
            log.warning("bus.unavailable", subject=subject, error=str(exc))
            msg = "The archiver's message bus (NATS) is not answering; try again shortly"
            raise DependencyDown(msg) from exc

    async def upload_finished(self, event: UploadFinished) -> None:
        ack = await self._publish(subjects.UPLOAD_FINISHED, event)
        log.info(
            "upload.finished_published",
            dataset=event.pid,
            source=event.source,
            seq=ack.seq,
            duplicate=bool(ack.duplicate),
        )

    async def job_requested(self, event: JobRequested) -> None:
        subject = (
            subjects.JOB_REQUESTED_ARCHIVE
            if event.job_type == "archive"
            else subjects.JOB_REQUESTED_RETRIEVE
        )
        ack = await self._publish(subject, event)
        log.info(
            "job.requested_published",
            job_id=event.job_id,
            job_type=event.job_type,
            datasets=len(event.datasets),
            duplicate=bool(ack.duplicate),
        )

    async def job_cancel_requested(self, event: JobCancelRequested) -> None:
        ack = await self._publish(subjects.JOB_CANCEL_REQUESTED, event)
        log.info(
            "job.cancel_requested_published",
            job_id=event.job_id,
            requested_by=event.requested_by,
            duplicate=bool(ack.duplicate),
        )

    async def job_retry_requested(self, event: JobRetryRequested) -> None:
        ack = await self._publish(subjects.JOB_RETRY_REQUESTED, event)
        log.info(
            "job.retry_requested_published",
            job_id=event.job_id,
            requested_by=event.requested_by,
            duplicate=bool(ack.duplicate),
        )
