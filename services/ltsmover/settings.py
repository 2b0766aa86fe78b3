from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from runtime.settings import LogSettings, LtsSettings, NatsSettings, S3Settings


class LtsMoverSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LTSMOVER_", extra="ignore")

    max_parallel_writes: int = Field(2, ge=1)
    """Datablocks written to LTS at once (tape-backed shares dislike many writers)."""
    min_free_percent: float = Field(5.0, ge=0, le=100)
    """posix: below this free space on the LTS share, writes wait."""
    free_space_timeout_s: float = Field(3600.0, gt=0)
    """How long a write waits for free space before the dataset fails."""

    nats: NatsSettings = Field(default_factory=NatsSettings)
    s3: S3Settings = Field(default_factory=S3Settings)  # type: ignore[arg-type]
    lts: LtsSettings = Field(default_factory=LtsSettings)
    log: LogSettings = Field(default_factory=LogSettings)
