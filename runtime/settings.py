"""Settings shared by several services, each read from its own env prefix.

A service composes the ones it needs into its own settings class, built once at
start-up and passed down. Secrets are `SecretStr` and may come from files in a
secrets directory (`/run/secrets` when it exists, as Docker and Kubernetes
mount them); a missing secret fails start-up.
"""

from pathlib import Path
from typing import Literal, TypeVar

from pydantic import AnyHttpUrl, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

SECRETS_DIR = Path("/run/secrets")


class NatsSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="NATS_", extra="ignore", use_attribute_docstrings=True
    )

    url: str = "nats://127.0.0.1:4222"
    """Comma-separated server URLs of the NATS cluster."""
    user: str
    """This process's NATS user: its service's name (`gateway`, ...), `provisioner` or
    `operator` (the users and their permissions: `deploy/nats.conf`)."""
    password: SecretStr
    """The user's password (the server reads it as `NATS_<USER>_PASSWORD`)."""
    tls_ca_file: Path | None = None
    """CA certificates that signed the servers' certificate; set, connections require TLS."""
    tls_cert_file: Path | None = None
    """Client certificate, for servers that verify clients (with `NATS_TLS_KEY_FILE`)."""
    tls_key_file: Path | None = None
    """The client certificate's private key."""
    stream_replicas: int = Field(1, ge=1, le=5)
    """Replicas per JetStream stream and KV bucket (`archiver provision`): 1 for a single
    server, 3 for a cluster."""


class S3Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="S3_", extra="ignore", use_attribute_docstrings=True
    )

    endpoint: AnyHttpUrl
    access_key: SecretStr
    secret_key: SecretStr
    region: str = "us-east-1"
    landing_bucket: str = "landing"
    archival_bucket: str = "archival"
    retrieval_bucket: str = "retrieval"


class ScicatSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="SCICAT_", extra="ignore", use_attribute_docstrings=True
    )

    url: AnyHttpUrl
    """SciCat's API base including `/api`, e.g. `https://scicat.example.org/api`;
    clients request paths below it such as `/v3/Datasets`."""
    username: str
    password: SecretStr
    timeout_s: float = 30.0


class LtsSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="LTS_", extra="ignore", use_attribute_docstrings=True
    )

    backend: Literal["posix", "s3"] = "posix"
    root: Path | None = None
    """posix: the mounted LTS share (NFS in front of tape)."""
    bucket: str = "lts"
    """s3: the bucket that holds LTS copies."""
    storage_class: str = "GLACIER"
    """s3: the storage class LTS copies are written with."""


class LogSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="LOG_", extra="ignore", use_attribute_docstrings=True
    )

    format: Literal["auto", "json", "console"] = "auto"
    """auto: console in a terminal, JSON otherwise."""
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


SettingsT = TypeVar("SettingsT", bound=BaseSettings)


def load(settings_class: type[SettingsT], secrets_dir: Path = SECRETS_DIR) -> SettingsT:
    """Build a settings object from the environment and, if mounted, the secrets dir.

    A secret file is named like its variable in lower case (`s3_secret_key`).
    Nested settings (NATS, S3, SciCat, ...) read the secrets dir too: pydantic-
    settings would otherwise apply it only to the outer class.
    """
    if not secrets_dir.is_dir():
        return settings_class()
    nested = {
        name: field.annotation(_secrets_dir=secrets_dir)  # type: ignore[call-arg, misc]
        for name, field in settings_class.model_fields.items()
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseSettings)
    }
    return settings_class(_secrets_dir=secrets_dir, **nested)  # type: ignore[call-arg]
