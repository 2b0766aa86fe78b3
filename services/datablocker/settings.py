from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from runtime.settings import LogSettings, NatsSettings, S3Settings

GiB = 1024**3


class DatablockerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DATABLOCKER_", extra="ignore")

    target_size_bytes: int = Field(20 * GiB, gt=0)
    """A datablock holds files up to this size; a larger file gets a datablock of its own."""
    max_parallel_datasets: int = Field(2, ge=1)
    """Datasets packed at once; each holds one bounded streaming buffer."""

    nats: NatsSettings = Field(default_factory=NatsSettings)
    s3: S3Settings = Field(default_factory=S3Settings)  # type: ignore[arg-type]
    log: LogSettings = Field(default_factory=LogSettings)
