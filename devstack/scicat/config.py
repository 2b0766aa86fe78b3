"""Configuration of the SciCat stand-in: one pydantic model, built once at start-up.

The stand-in is configured as SciCat is: the group lists and the job config file
come from the environment under SciCat's names (`ADMIN_GROUPS`, ...,
`JOB_CONFIGURATION_FILE`; see `access.AccessGroups`), with SciCat's defaults.
`config_from_env` is the one place that reads the environment; the process
environment is also what job templates see as `env` (SciCat passes `process.env`).

Beyond SciCat: the accounts (SciCat's functional accounts, with their groups),
and `write_window_s`, the pause between reading a dataset and writing it back in
the lifecycle PATCH and the datablock routes (SciCat's awaits between its
`findOne` and its `findOneAndUpdate`), which lets tests lose a field exactly as
SciCat can.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from devstack.scicat.access import AccessGroups
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
    """SciCat's usual functional accounts, the archiver's job creator, and two plain users."""
    return {
        "admin": Account(
            password=SecretStr("2jf70TPNZsS"), email="admin@standin.local", groups=["admin"]
        ),
        "archiveManager": Account(
            password=SecretStr("aman"),
            email="archivemanager@standin.local",
            groups=["archivemanager"],
        ),
        "archiveJobs": Account(
            password=SecretStr("ajobs"),
            email="archivejobs@standin.local",
            groups=["archivejobs"],
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
    # SciCat's group lists (ADMIN_GROUPS, ...): SciCat's defaults unless set.
    access: AccessGroups = Field(default_factory=AccessGroups)
    # Either a parsed job config or a file to parse; the parsed one wins.
    job_config_path: Path | None = None
    job_config: JobConfig | None = None
    # What job templates see as `env` (SciCat: process.env).
    template_env: dict[str, str] = Field(default_factory=dict, repr=False)
    # SciCat sets no timeout of its own on a url action: undici's defaults apply
    # (10 s to connect, 300 s for the answer's headers and between body chunks).
    url_action_connect_timeout_s: float = 10.0
    url_action_timeout_s: float = 300.0
    # Pause between reading a dataset and writing it back (see the module docstring).
    write_window_s: float = 0.05


def load_accounts(path: Path) -> dict[str, Account]:
    """Read `{"username": {"password", "email", "groups"}}` from a JSON file."""
    raw = json.loads(path.read_text(encoding="utf-8"))
    return {name: Account.model_validate(fields) for name, fields in raw.items()}


EXAMPLE_JOB_CONFIG = Path(__file__).with_name("jobconfig.example.yaml")

# The SciCat site configuration of the dev stack and the tests: what a facility
# sets in its SciCat's environment (docs/scicat.md). `admin` is the people's
# administrator, `ingestor` the Ingestor's functional account. The archiver has
# two accounts and no admin group: archiveManager (group `archivemanager`) reads
# datasets, registers datablocks, updates lifecycles and job status; archiveJobs
# (group `archivejobs`) only creates the archive jobs scicat_sync is asked for,
# because SciCat's job tiers are exclusive (a create-job-privileged account may
# update no job). See docs/scicat.md, "The archiver's accounts".
ARCHIVER_GROUP = "archivemanager"
ARCHIVER_JOBS_GROUP = "archivejobs"
DEV_SITE_ENV: dict[str, str] = {
    "ADMIN_GROUPS": "admin",
    "DELETE_GROUPS": "admin",
    "CREATE_DATASET_PRIVILEGED_GROUPS": f"ingestor,{ARCHIVER_GROUP}",
    "UPDATE_DATASET_LIFECYCLE_GROUPS": ARCHIVER_GROUP,
    "UPDATE_JOB_PRIVILEGED_GROUPS": ARCHIVER_GROUP,
    "CREATE_JOB_PRIVILEGED_GROUPS": ARCHIVER_JOBS_GROUP,
}


def config_from_env(env: Mapping[str, str], **fields: object) -> StandinConfig:
    """The stand-in's configuration from SciCat's environment variables plus `fields`.

    `JOB_CONFIGURATION_FILE` names the job config (a `job_config_path` field wins);
    `STANDIN_WRITE_WINDOW_MS` sets the read-merge-write pause.
    """
    values: dict[str, object] = {
        "access": AccessGroups.from_env(env),
        "template_env": dict(env),
    }
    if env.get("JOB_CONFIGURATION_FILE"):
        values["job_config_path"] = Path(env["JOB_CONFIGURATION_FILE"])
    if env.get("STANDIN_WRITE_WINDOW_MS"):
        values["write_window_s"] = float(env["STANDIN_WRITE_WINDOW_MS"]) / 1000
    return StandinConfig.model_validate({**values, **fields})


def resolve_job_config(config: StandinConfig) -> JobConfig:
    """The parsed job config: given, else read from its file (else the packaged example).

    Unlike SciCat, which configures no job types without JOB_CONFIGURATION_FILE,
    the stand-in then loads `jobconfig.example.yaml` (the archiver's archive and
    retrieve jobs).
    """
    if config.job_config is not None:
        return config.job_config
    return load_job_config(config.job_config_path or EXAMPLE_JOB_CONFIG)
