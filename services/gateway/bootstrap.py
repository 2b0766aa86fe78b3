"""The gateway's composition root: what its routes and its consumer need, built at start-up."""

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from contracts import kv as kv_names
from runtime.dead_letters import Letter, list_letters
from runtime.kvstore import open_bucket
from runtime.objectstore import s3_client
from runtime.periodic import open_rounds, run_periodically
from runtime.s3_extras import s3_extras_client
from runtime.scicat import open_scicat_client
from runtime.service_bus import Bus
from services.gateway.admission import Admission, open_reservations
from services.gateway.announcements import Announcer
from services.gateway.health import Probe
from services.gateway.jobs import JobIntake
from services.gateway.landing_uploads import LandingZone
from services.gateway.notifications import MarkerWatch
from services.gateway.packing_records import open_packing_records
from services.gateway.reconciliation import take_in_stuck_jobs
from services.gateway.scicat_lookups import DatasetOwner, Identity, ScicatLookups, TtlCache
from services.gateway.settings import GatewaySettings
from services.gateway.status_sessions import StatusSessions
from services.gateway.tokens import TokenIssuer
from services.gateway.uploads import Uploads

Clock = Callable[[], datetime]

RECONCILIATION_TASK = "gateway.job_reconciliation"


def now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Gateway:
    """The parts behind the routes (`services.gateway.dependencies`) and the MinIO consumer."""

    catalog: ScicatLookups
    issuer: TokenIssuer
    uploads: Uploads
    intake: JobIntake
    markers: MarkerWatch
    readiness_probes: Mapping[str, Probe]
    ingestor_groups: tuple[str, ...]
    operator_groups: tuple[str, ...]
    stuck_after: timedelta
    status_sessions: StatusSessions
    dead_letters: Callable[[], Awaitable[list[Letter]]]
    """Every dead letter, oldest first (the status page's list; the gateway may read, not
    remove them, nor read the originals' streams)."""
    clock: Clock
    announcer: Announcer
    """Publishes people's cancel and retry requests (`job_actions`)."""
    retry_answer_wait: timedelta
    """How long a retry request waits for the new job's id (`job_actions.retry_job`)."""


def token_issuer(settings: GatewaySettings) -> TokenIssuer:
    return TokenIssuer(
        settings.token_secret.get_secret_value(),
        access_ttl=timedelta(seconds=settings.access_token_ttl_s),
        refresh_ttl=timedelta(seconds=settings.refresh_token_ttl_s),
        session_max=timedelta(seconds=settings.session_max_s),
    )


@asynccontextmanager
async def build_gateway(
    settings: GatewaySettings, bus: Bus, *, clock: Clock = now
) -> AsyncIterator[Gateway]:
    """The gateway's parts on the connected bus; the SciCat client closes, and the stuck-job
    reconciliation stops, when the block ends."""
    s3 = s3_client(settings.s3)
    signer = (
        s3_client(settings.s3.model_copy(update={"endpoint": settings.presign_endpoint}))
        if settings.presign_endpoint
        else s3
    )
    admission = Admission(
        settings.landing_capacity_bytes,
        timedelta(seconds=settings.reservation_ttl_s),
        await open_reservations(bus.js),
    )
    announcer = Announcer(bus)
    async with open_scicat_client(settings.scicat) as scicat:
        catalog = ScicatLookups(
            scicat,
            identity_cache=TtlCache[Identity](settings.identity_cache_s),
            dataset_cache=TtlCache[DatasetOwner](settings.dataset_cache_s),
        )

        async def nats_probe() -> None:
            # A round trip to the server (PING/PONG): the gateway's NATS user may not read
            # account-wide info; its durable is the "consumers" probe's.
            if not bus.client.is_connected:
                msg = "not connected to NATS"
                raise RuntimeError(msg)
            await bus.client.flush(timeout=2)

        async def s3_probe() -> None:
            await asyncio.to_thread(s3.bucket_exists, settings.s3.landing_bucket)

        async def scicat_probe() -> None:
            await scicat.check_health()

        intake = JobIntake(
            publish=announcer.job_requested,
            saved_job=catalog.saved_job,
            max_payload=lambda: bus.max_payload,
            clock=clock,
            jobs=await open_bucket(bus.js, kv_names.JOBS),
        )
        gateway = Gateway(
            catalog=catalog,
            issuer=token_issuer(settings),
            uploads=Uploads(
                catalog=catalog,
                admission=admission,
                landing=LandingZone(
                    s3,
                    s3_extras_client(settings.s3),
                    signer,
                    settings.s3.landing_bucket,
                    timedelta(seconds=settings.presigned_url_expiry_s),
                ),
                records=await open_packing_records(bus.js),
                completion_marker=settings.completion_marker,
                publish=announcer.upload_finished,
                clock=clock,
            ),
            intake=intake,
            markers=MarkerWatch(
                landing_bucket=settings.s3.landing_bucket,
                completion_marker=settings.completion_marker,
                creates_archiving_job=settings.marker_creates_archiving_job,
                catalog=catalog,
                admission=admission,
                announce=announcer.upload_finished,
                clock=clock,
            ),
            readiness_probes={"nats": nats_probe, "s3": s3_probe, "scicat": scicat_probe},
            ingestor_groups=settings.ingestor_groups,
            operator_groups=settings.operator_groups,
            stuck_after=timedelta(seconds=settings.stuck_after_s),
            status_sessions=StatusSessions(
                settings.token_secret.get_secret_value(),
                timedelta(seconds=settings.status_session_ttl_s),
            ),
            dead_letters=lambda: list_letters(bus.js, originals=False),
            clock=clock,
            announcer=announcer,
            retry_answer_wait=timedelta(seconds=settings.retry_answer_wait_s),
        )
        reconcile_after = timedelta(seconds=settings.reconcile_after_s)
        reconciler = asyncio.create_task(
            run_periodically(
                RECONCILIATION_TASK,
                lambda: take_in_stuck_jobs(
                    catalog.submitted_jobs, intake, older_than=reconcile_after, now=clock()
                ),
                rounds=await open_rounds(bus.js),
                interval=timedelta(seconds=settings.reconcile_interval_s),
            )
        )
        try:
            yield gateway
        finally:
            reconciler.cancel()
            with suppress(asyncio.CancelledError):
                await reconciler
