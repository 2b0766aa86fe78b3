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

    nats: NatsSettings = Field(default_factory=NatsSettings)
    s3: S3Settings = Field(default_factory=S3Settings)  # type: ignore[arg-type]
    lts: LtsSettings = Field(default_factory=LtsSettings)
    log: LogSettings = Field(default_factory=LogSettings)
