from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from runtime.settings import LogSettings, LtsSettings, NatsSettings, S3Settings


class VerifierSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="VERIFIER_", extra="ignore", use_attribute_docstrings=True
    )

    recall_poll_s: float = Field(10.0, gt=0)
    """How often an unreadable (tape-offline, not yet restored) copy is tried again."""
    recall_timeout_s: float = Field(6 * 3600.0, gt=0)
    """How long a copy may stay unreadable before verification fails."""

    metrics_host: str = "127.0.0.1"
    """Address of the monitoring port (/metrics, /livez, /readyz); 0.0.0.0 in a container."""
    metrics_port: int = Field(9183, ge=0, le=65535)
    """Monitoring port: Prometheus metrics at /metrics, health at /livez and /readyz
    (0: any free port). Each service has its own default, so all five fit on one host."""

    nats: NatsSettings = Field(default_factory=NatsSettings)
    s3: S3Settings = Field(default_factory=S3Settings)  # type: ignore[arg-type]
    lts: LtsSettings = Field(default_factory=LtsSettings)
    log: LogSettings = Field(default_factory=LogSettings)
