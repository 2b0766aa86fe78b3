"""Secrets come from files in a secrets dir; a missing one stops start-up."""

from pathlib import Path

import pytest
from pydantic import ValidationError

from runtime.settings import load
from services.verifier.settings import VerifierSettings


def test_secrets_are_read_from_files_for_nested_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """S3 keys and the NATS password mounted as files (Docker/Kubernetes secrets) reach
    the nested settings."""
    monkeypatch.setenv("S3_ENDPOINT", "http://minio:9000")
    monkeypatch.setenv("NATS_USER", "verifier")
    monkeypatch.delenv("S3_ACCESS_KEY", raising=False)
    monkeypatch.delenv("S3_SECRET_KEY", raising=False)
    monkeypatch.delenv("NATS_PASSWORD", raising=False)
    (tmp_path / "s3_access_key").write_text("archiver")
    (tmp_path / "s3_secret_key").write_text("from-a-file")
    (tmp_path / "nats_password").write_text("nats-from-a-file")

    settings = load(VerifierSettings, secrets_dir=tmp_path)

    assert settings.s3.access_key.get_secret_value() == "archiver"
    assert settings.s3.secret_key.get_secret_value() == "from-a-file"
    assert settings.nats.password.get_secret_value() == "nats-from-a-file"


def test_a_missing_secret_fails_start_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Never an empty string standing in for a secret."""
    monkeypatch.setenv("S3_ENDPOINT", "http://minio:9000")
    monkeypatch.setenv("S3_ACCESS_KEY", "archiver")
    monkeypatch.setenv("NATS_USER", "verifier")
    monkeypatch.setenv("NATS_PASSWORD", "nats-secret")
    monkeypatch.delenv("S3_SECRET_KEY", raising=False)

    with pytest.raises(ValidationError, match="secret_key"):
        load(VerifierSettings, secrets_dir=tmp_path)


def test_a_missing_nats_password_fails_start_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No service connects to the bus without credentials."""
    monkeypatch.setenv("S3_ENDPOINT", "http://minio:9000")
    monkeypatch.setenv("S3_ACCESS_KEY", "archiver")
    monkeypatch.setenv("S3_SECRET_KEY", "s3-secret")
    monkeypatch.setenv("NATS_USER", "verifier")
    monkeypatch.delenv("NATS_PASSWORD", raising=False)

    with pytest.raises(ValidationError, match=r"NatsSettings\npassword\n  Field required"):
        load(VerifierSettings, secrets_dir=tmp_path)
