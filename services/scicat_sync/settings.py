from typing import Literal

from pydantic import AnyHttpUrl, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from runtime.settings import LogSettings, NatsSettings, S3Settings, ScicatSettings


class ScicatSyncSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="SCICAT_SYNC_", extra="ignore", use_attribute_docstrings=True
    )

    job_api: Literal["v3", "v4"] = "v4"
    """Which SciCat jobs API receives job status (v4: statusCode/statusMessage)."""
    job_creator_username: str
    """The SciCat account that creates archive jobs (finalize with `create_archiving_job`):
    a member of SciCat's CREATE_JOB_PRIVILEGED_GROUPS. It must differ from SCICAT_USERNAME,
    which updates job status: SciCat's job tiers are exclusive (docs/scicat.md)."""
    job_creator_password: SecretStr
    """Its password (as a file: `scicat_sync_job_creator_password` in the secrets dir)."""
    retry_budget_s: float = Field(60.0, gt=0)
    """In-process retry time per SciCat call before the message is nak-ed for later."""
    retry_wait_initial_s: float = Field(0.2, gt=0)
    """First backoff of the in-process retries; it doubles up to `retry_wait_max_s`."""
    retry_wait_max_s: float = Field(5.0, gt=0)
    retry_wait_jitter_s: float = Field(0.5, ge=0)
    nak_delays_s: tuple[float, ...] | None = None
    """Override the consumers' nak delays (seconds, one per failed delivery); None keeps
    the contract's. For tests and drills that must ride out an outage quickly."""

    retrieval_public_endpoint: AnyHttpUrl | None = None
    """The S3 endpoint users download retrieved datasets from, for the presigned URLs in a
    retrieve job's result (default: S3_ENDPOINT)."""
    metrics_host: str = "127.0.0.1"
    """Address of the monitoring port (/metrics, /livez, /readyz); 0.0.0.0 in a container."""
    metrics_port: int = Field(9184, ge=0, le=65535)
    """Monitoring port: Prometheus metrics at /metrics, health at /livez and /readyz
    (0: any free port). Each service has its own default, so all five fit on one host."""

    nats: NatsSettings = Field(default_factory=NatsSettings)
    scicat: ScicatSettings = Field(default_factory=ScicatSettings)  # type: ignore[arg-type]
    s3: S3Settings = Field(default_factory=S3Settings)  # type: ignore[arg-type]
    """Only to presign download URLs of the retrieval bucket (no request is made): credentials
    that may read that bucket suffice."""
    log: LogSettings = Field(default_factory=LogSettings)
