from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from runtime.settings import LogSettings, LtsSettings, NatsSettings, S3Settings


class LtsMoverSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="LTSMOVER_", extra="ignore", use_attribute_docstrings=True
    )

    max_parallel_writes: int = Field(2, ge=1)
    """Datablocks written to LTS at once (tape-backed shares dislike many writers)."""
    max_parallel_datasets: int = Field(4, ge=1)
    """Datasets of one job worked on at once."""
    min_free_percent: float = Field(5.0, ge=0, le=100)
    """posix: below this free space on the LTS share, writes wait."""
    free_space_timeout_s: float = Field(3600.0, gt=0)
    """How long a write waits for free space before the dataset fails."""
    free_space_poll_s: float = Field(30.0, gt=0)
    """How often free space is looked at again while a write waits."""
    max_copy_attempts: int = Field(3, ge=1)
    """Copies of one datablock tried before its dataset fails (a failed check re-copies)."""

    cancel_poll_s: float = Field(2.0, gt=0)
    """How often a running copy looks at its job's record for a cancel request (a cancelled
    job's copy stops within this and one 8 MiB chunk)."""

    recall_poll_s: float = Field(30.0, gt=0)
    """retrieve: how often an LTS copy that is not readable yet (tape, cold restore) is tried."""
    recall_timeout_s: float = Field(6 * 3600.0, gt=0)
    """retrieve: how long a copy may stay unreadable before its dataset fails."""
    max_parallel_copies: int = Field(2, ge=1)
    """retrieve: datablocks copied from LTS to the retrieval bucket at once."""
    retrieval_url_expiry_s: int = Field(7 * 86400, ge=1, le=7 * 86400)
    """retrieve: how long a verified copy is kept in the retrieval bucket; URLs issued for it
    (by scicat_sync) expire with it (7 days is the S3 maximum)."""
    retrieval_reuse_min_remaining_s: float = Field(86400.0, ge=0)
    """retrieve: a verified copy is reused (not copied again) if it lasts at least this long."""
    retrieval_claim_stale_s: float = Field(12 * 3600.0, gt=0)
    """retrieve: an unverified copy claimed longer ago than this is taken over by a new job."""
    sweep_interval_s: float = Field(3600.0, gt=0)
    """retrieve: expired retrieval copies are removed this often, by one instance per round
    (the first round when the first instance starts)."""

    metrics_host: str = "127.0.0.1"
    """Address of the monitoring port (/metrics, /livez, /readyz); 0.0.0.0 in a container."""
    metrics_port: int = Field(9182, ge=0, le=65535)
    """Monitoring port: Prometheus metrics at /metrics, health at /livez and /readyz
    (0: any free port). Each service has its own default, so all five fit on one host."""

    nats: NatsSettings = Field(default_factory=NatsSettings)
    s3: S3Settings = Field(default_factory=S3Settings)  # type: ignore[arg-type]
    lts: LtsSettings = Field(default_factory=LtsSettings)
    log: LogSettings = Field(default_factory=LogSettings)
