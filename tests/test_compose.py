"""compose.yml cannot be run here (no Docker engine): check what can be checked."""

from pathlib import Path

import pytest
import yaml
from pydantic_settings import BaseSettings

from archiver.running import Service, settings_class

ROOT = Path(__file__).parents[1]
COMPOSE = yaml.safe_load((ROOT / "compose.yml").read_text())
ARCHIVER_SERVICES = {
    name: spec
    for name, spec in COMPOSE["services"].items()
    if spec.get("image") == "archiver:latest"
}


def env_names(cls: type[BaseSettings]) -> set[str]:
    """Every environment variable a settings class (and its nested settings) reads."""
    prefix = cls.model_config.get("env_prefix", "")
    names: set[str] = set()
    for name, field in cls.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseSettings):
            names |= env_names(annotation)
        else:
            names.add(f"{prefix}{name}".upper())
    return names


def test_every_archiver_service_is_a_run_target() -> None:
    """Each service in compose runs `archiver run <service>` for a service that exists."""
    assert {spec["command"][1] for spec in ARCHIVER_SERVICES.values()} == {s.value for s in Service}
    for spec in ARCHIVER_SERVICES.values():
        assert spec["command"][0] == "run"


@pytest.mark.parametrize("name", sorted(ARCHIVER_SERVICES))
def test_every_env_var_set_is_one_the_settings_read(name: str) -> None:
    """A typo in compose would silently fall back to a default; catch it here."""
    service = Service(ARCHIVER_SERVICES[name]["command"][1])
    read = env_names(settings_class(service))
    assert set(ARCHIVER_SERVICES[name]["environment"]) <= read


def test_minio_publishes_to_the_subject_the_gateway_consumes() -> None:
    from contracts import subjects

    env = COMPOSE["services"]["minio"]["environment"]
    assert env["MINIO_NOTIFY_NATS_SUBJECT_PRIMARY"] == subjects.MINIO_EVENTS
    assert env["MINIO_NOTIFY_NATS_JETSTREAM_PRIMARY"] == "on"
    assert env["MINIO_NOTIFY_NATS_QUEUE_DIR_PRIMARY"]


def test_nats_is_a_three_node_jetstream_cluster() -> None:
    nodes = [n for n in COMPOSE["services"] if n.startswith("nats")]
    assert len(nodes) == 3
    for node in nodes:
        command = COMPOSE["services"][node]["command"]
        assert "--jetstream" in command
        assert "--cluster_name" in command
