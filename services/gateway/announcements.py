"""What the gateway announces on the bus: finished uploads and requested jobs, one log line each."""

from dataclasses import dataclass

import structlog

from contracts import subjects
from contracts.events import JobRequested, UploadFinished
from runtime.service_bus import Bus

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Announcer:
    bus: Bus

    async def upload_finished(self, event: UploadFinished) -> None:
        ack = await self.bus.publish(subjects.UPLOAD_FINISHED, event)
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
        ack = await self.bus.publish(subject, event)
        log.info(
            "job.requested_published",
            job_id=event.job_id,
            job_type=event.job_type,
            datasets=len(event.datasets),
            duplicate=bool(ack.duplicate),
        )
