"""compose.yml cannot be run here (no Docker engine): check what can be checked."""

from pathlib import Path

import pytest
import yaml
from pydantic_settings import BaseSettings

from archiver.running import Service, settings_class
from contracts.bus_permissions import bus_users, password_variable
from runtime.settings import LogSettings, NatsSettings

ROOT = Path(__file__).parents[1]
COMPOSE = yaml.safe_load((ROOT / "compose.yml").read_text())
ARCHIVER_SERVICES = {
    name: spec
    for name, spec in COMPOSE["services"].items()
    if spec.get("image") == "archiver:latest" and spec["command"][0] == "run"
}
NATS_NODES = [name for name in COMPOSE["services"] if name.startswith("nats")]


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


def test_nats_is_a_three_node_jetstream_cluster_with_authenticated_routes() -> None:
    """Each node runs the generated cluster config; its route URLs carry the route password."""
    assert len(NATS_NODES) == 3
    for node in NATS_NODES:
        spec = COMPOSE["services"][node]
        assert spec["command"][:2] == ["--config", "/etc/nats/nats-cluster.conf"]
        assert "--jetstream" in spec["command"]
        assert {c["target"] for c in spec["configs"]} == {
            "/etc/nats/nats.conf",
            "/etc/nats/nats-cluster.conf",
        }
        routes = [spec["environment"][f"NATS_ROUTE_{n}"] for n in (1, 2, 3)]
        assert routes == [
            f'"nats://route:${{NATS_ROUTE_PASSWORD}}@{other}:6222"' for other in NATS_NODES
        ]
    assert {c["file"] for c in COMPOSE["configs"].values()} == {
        "./deploy/nats.conf",
        "./deploy/nats-cluster.conf",
    }


def test_nats_servers_know_every_users_password_and_publish_no_port() -> None:
    """Clients log in with a password per user; no client or monitoring port leaves compose."""
    wanted = {password_variable(user.name) for user in bus_users()} | {"NATS_ROUTE_PASSWORD"}
    for node in NATS_NODES:
        spec = COMPOSE["services"][node]
        assert wanted <= set(spec["environment"])
        for variable in wanted:
            assert spec["environment"][variable] == f'"${{{variable}:?set {variable}}}"'
        assert "ports" not in spec
        assert not {"--http_port", "-m", "--https_port", "-ms"} & set(spec["command"])


def test_every_service_logs_in_as_its_own_nats_user() -> None:
    """The user is the service's name; its password is that user's secret, required."""
    for name, spec in ARCHIVER_SERVICES.items():
        service = spec["command"][1]
        env = spec["environment"]
        variable = password_variable(service)
        assert env["NATS_USER"] == service, name
        assert env["NATS_PASSWORD"] == f"${{{variable}:?set {variable}}}", name


def test_provisioning_runs_once_before_any_service_starts() -> None:
    """`archiver provision` as the provisioner (R3); every service waits for its success."""
    provision = COMPOSE["services"]["provision"]
    assert provision["command"] == ["provision"]
    assert provision["restart"] == "no"
    assert provision["environment"]["NATS_USER"] == "provisioner"
    assert provision["environment"]["NATS_STREAM_REPLICAS"] == "3"
    assert set(provision["environment"]) <= env_names(NatsSettings) | env_names(LogSettings)
    for name, spec in ARCHIVER_SERVICES.items():
        assert spec["depends_on"]["provision"] == {"condition": "service_completed_successfully"}, (
            name
        )


def test_minio_notifies_as_the_minio_user() -> None:
    """MinIO's NATS target logs in as `minio`, which may publish minio.events only."""
    env = COMPOSE["services"]["minio"]["environment"]
    assert env["MINIO_NOTIFY_NATS_USERNAME_PRIMARY"] == "minio"
    assert env["MINIO_NOTIFY_NATS_PASSWORD_PRIMARY"] == (
        "${NATS_MINIO_PASSWORD:?set NATS_MINIO_PASSWORD}"
    )
