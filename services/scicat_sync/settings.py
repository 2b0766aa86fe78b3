from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from runtime.settings import LogSettings, NatsSettings, ScicatSettings


class ScicatSyncSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SCICAT_SYNC_", extra="ignore")

    job_api: Literal["v3", "v4"] = "v4"
    """Which SciCat jobs API receives job status (v4: statusCode/statusMessage)."""
    retry_budget_s: float = Field(60.0, gt=0)
    """In-process retry time per SciCat call before the message is nak-ed for later."""

    nats: NatsSettings = Field(default_factory=NatsSettings)
    scicat: ScicatSettings = Field(default_factory=ScicatSettings)  # type: ignore[arg-type]
    log: LogSettings = Field(default_factory=LogSettings)
