"""Configuration of the SciCat stand-in: one pydantic model, built once at start-up.

The stand-in is a development tool, so every field has a dev default except the
state directory (where the JSON state lives must always be chosen explicitly).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from devstack.scicat.jobconfig import JobConfig, load_job_config

# Dev-only secrets: the stand-in never runs outside a laptop or CI.
_DEV_JWT_SECRET = "scicat-standin-dev-secret-not-for-production"  # noqa: S105


class Account(BaseModel):
    """A SciCat functional account (local login with a password)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    password: SecretStr
    email: str
    groups: list[str]


def default_accounts() -> dict[str, Account]:
    """SciCat's usual functional accounts plus two plain users for access tests."""
    return {
        "admin": Account(
            password=SecretStr("2jf70TPNZsS"), email="admin@standin.local", groups=["admin"]
        ),
        "archiveManager": Account(
            password=SecretStr("aman"),
            email="archivemanager@standin.local",
            groups=["archivemanager"],
        ),
        "ingestor": Account(
            password=SecretStr("aman"),
            email="ingestor@standin.local",
            groups=["ingestor", "group1"],
        ),
        "user1": Account(
            password=SecretStr("a609316768619f154ef58db4d847b75e"),
            email="user1@standin.local",
            groups=["group1"],
        ),
        "user2": Account(
            password=SecretStr("f522d1d715970073a6413474ca0e0f63"),
            email="user2@standin.local",
            groups=["group2"],
        ),
    }


class StandinConfig(BaseModel):
    """Everything the stand-in needs; `create_app` reads nothing else."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    port: int = 3000
    state_dir: Path
    jwt_secret: SecretStr = SecretStr(_DEV_JWT_SECRET)
    token_expires_s: int = 3600
    pid_prefix: str = "20.500.11935"
    accounts: dict[str, Account] = Field(default_factory=default_accounts)
    # SciCat's ADMIN_GROUPS: full rights everywhere.
    admin_groups: list[str] = Field(default_factory=lambda: ["admin"])
    # Rights on any dataset and job (SciCat's DELETE_GROUPS/archivemanager role).
    archive_manager_groups: list[str] = Field(default_factory=lambda: ["archivemanager"])
    # SciCat's CREATE_DATASET_PRIVILEGED_GROUPS: may create datasets for any
    # ownerGroup and with a caller-chosen pid (the Ingestor's functional account).
    create_dataset_privileged_groups: list[str] = Field(default_factory=lambda: ["ingestor"])
    # Either a parsed job config or a file to parse; the parsed one wins.
    job_config_path: Path | None = None
    job_config: JobConfig | None = None
    # Bound on each url job action; SciCat waits inside the create request.
    url_action_timeout_s: float = 10.0


def load_accounts(path: Path) -> dict[str, Account]:
    """Read `{"username": {"password", "email", "groups"}}` from a JSON file."""
    raw = json.loads(path.read_text(encoding="utf-8"))
    return {name: Account.model_validate(fields) for name, fields in raw.items()}


EXAMPLE_JOB_CONFIG = Path(__file__).with_name("jobconfig.example.yaml")


def resolve_job_config(config: StandinConfig) -> JobConfig:
    """The parsed job config: given, else read from its file (or the packaged example).

    `${VAR}` in the file is filled from the process environment; this is the only
    place the stand-in reads it.
    """
    if config.job_config is not None:
        return config.job_config
    return load_job_config(config.job_config_path or EXAMPLE_JOB_CONFIG, os.environ)
