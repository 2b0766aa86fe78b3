from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from runtime.settings import LogSettings, NatsSettings, S3Settings, ScicatSettings

GiB = 1024**3


class GatewaySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GATEWAY_", extra="ignore")

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
    presigned_url_expiry_s: int = Field(3600, gt=0, le=7 * 24 * 3600)
    completion_marker: str = ".archiver-upload-complete"
    """Object name (below raw_files/) whose creation announces a finished upload."""

    nats: NatsSettings = Field(default_factory=NatsSettings)
    s3: S3Settings = Field(default_factory=S3Settings)  # type: ignore[arg-type]
    scicat: ScicatSettings = Field(default_factory=ScicatSettings)  # type: ignore[arg-type]
    log: LogSettings = Field(default_factory=LogSettings)
