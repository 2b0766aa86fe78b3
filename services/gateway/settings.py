from pydantic import AnyHttpUrl, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from runtime.settings import LogSettings, NatsSettings, S3Settings, ScicatSettings

GiB = 1024**3
MiB = 1024**2
KiB = 1024


class GatewaySettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="GATEWAY_", extra="ignore", use_attribute_docstrings=True
    )

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    root_path: str = "/archiver/api/v1"
    """Every route lives below this path, as in the reference."""

    job_user: str
    """HTTP Basic user SciCat's url job action authenticates with."""
    job_password: SecretStr
    job_bearer_token: SecretStr | None = None
    """Optional: a Bearer token accepted on the job endpoint instead of Basic."""
    token_secret: SecretStr
    """Signs the upload tokens the gateway hands out on POST /token."""

    landing_capacity_bytes: int = Field(1024 * GiB, gt=0)
    """Landing-zone space that upload reservations may claim."""
    ingestor_groups: tuple[str, ...] = ("ingestor",)
    """SciCat access groups allowed to upload (any one suffices)."""
    operator_groups: tuple[str, ...] = ()
    """SciCat access groups whose members operate the archiver: they see and steer every job
    on the job API and the status page (others see their own groups' jobs). None by default."""
    stuck_after_s: float = Field(1800.0, gt=0)
    """A job or dataset not finished whose newest timestamp is older than this is flagged
    stuck on the job API and the status page."""
    status_session_ttl_s: int = Field(1800, gt=0, le=12 * 3600)
    """Lifetime of a status page login (a signed cookie); then the operator logs in again."""
    retry_answer_wait_s: float = Field(5.0, ge=0, le=60)
    """How long `POST /archiver/jobs/{id}/retry` waits for the new SciCat job's id before it
    answers without it (the job is still being created; the old job's record will name it)."""
    reconcile_after_s: float = Field(300.0, gt=0)
    """A SciCat archive or retrieve job still `jobSubmitted` this long after it was saved, and
    unknown to the archiver (its url action never arrived), is taken in by reconciliation."""
    reconcile_interval_s: float = Field(60.0, gt=0)
    """How often SciCat is asked for such jobs (one gateway instance per round)."""
    presigned_url_expiry_s: int = Field(3600, gt=0, le=7 * 24 * 3600)
    completion_marker: str = ".archiver-upload-complete"
    """Object name (below raw_files/) whose creation announces a finished upload."""
    marker_creates_archiving_job: bool = False
    """`create_archiving_job` of an upload announced by the completion marker alone
    (a notification carries no flags; a finalize call inside the duplicate window
    after the marker does not change it)."""
    presign_endpoint: AnyHttpUrl | None = None
    """S3 endpoint clients reach, when it differs from `s3.endpoint` (the host is signed)."""

    access_token_ttl_s: int = Field(900, gt=0)
    """Lifetime of an upload access token; the client refreshes it."""
    refresh_token_ttl_s: int = Field(8 * 3600, gt=0)
    session_max_s: int = Field(7 * 24 * 3600, gt=0)
    """Refreshing never extends a session past this age; then the user logs in again."""
    identity_cache_s: float = Field(60.0, ge=0)
    """How long a SciCat token's identity (access groups) is reused."""
    dataset_cache_s: float = Field(60.0, ge=0)
    """How long a dataset's owner (read with the service account) is reused."""
    reservation_ttl_s: int = Field(7 * 24 * 3600, gt=0)
    """An upload reservation not finalized or aborted by then stops counting."""

    max_body_bytes: int = Field(64 * KiB, gt=0)
    """Largest request body of any route but the two below (JSON of a few fields); a larger
    one gets 413 before it is read."""
    max_complete_upload_body_bytes: int = Field(2 * MiB, gt=0)
    """Largest `/s3/completeUpload` body: it lists up to 10,000 parts of ~130 bytes each."""
    max_job_body_bytes: int = Field(4 * MiB, gt=0)
    """Largest job POST: SciCat's job JSON with its dataset and file lists (a job's event
    must fit in one bus message anyway)."""
    metrics_host: str = "127.0.0.1"
    """Address of the monitoring port (/metrics, /livez, /readyz); 0.0.0.0 in a container."""
    metrics_port: int = Field(9180, ge=0, le=65535)
    """Monitoring port: Prometheus metrics at /metrics, health at /livez and /readyz
    (0: any free port). Each service has its own default, so all five fit on one host."""

    nats: NatsSettings = Field(default_factory=NatsSettings)
    s3: S3Settings = Field(default_factory=S3Settings)  # type: ignore[arg-type]
    scicat: ScicatSettings = Field(default_factory=ScicatSettings)  # type: ignore[arg-type]
    log: LogSettings = Field(default_factory=LogSettings)
