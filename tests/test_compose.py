"""compose.yml cannot be run here (no Docker engine): check what can be checked."""

import asyncio
import re
import sys
import tomllib
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from pydantic_settings import BaseSettings

from archiver.running import Service, settings_class
from devstack.processes import free_port
from runtime.monitoring import BusHealth, MonitoringAddress, MonitoringServer

ROOT = Path(__file__).parents[1]
COMPOSE = yaml.safe_load((ROOT / "compose.yml").read_text())
ARCHIVER_SERVICES = {
    name: spec for name, spec in COMPOSE["services"].items() if spec.get("build") == "."
}
LONG_RUNNING = {
    name: spec for name, spec in COMPOSE["services"].items() if spec.get("restart") != "no"
}
PROMETHEUS = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())


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


def prefix(name: str) -> str:
    return settings_class(Service(ARCHIVER_SERVICES[name]["command"][1])).model_config["env_prefix"]


def test_every_image_is_pinned_to_a_release() -> None:
    """No `latest`, no bare name; the archiver's own image carries pyproject's version."""
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    images = {name: spec["image"] for name, spec in COMPOSE["services"].items()}
    for name, image in images.items():
        repository, _, tag = image.rpartition(":")
        assert repository, f"{name}: {image} has no tag"
        assert tag != "latest", f"{name}: {image}"
    assert {images[name] for name in ARCHIVER_SERVICES} == {f"archiver:{version}"}
    assert images["minio"].startswith("minio/minio:RELEASE.")


def test_every_long_running_service_has_a_healthcheck() -> None:
    """Each archiver service's asks /readyz on the monitoring port it listens on (all addresses)."""
    for name, spec in LONG_RUNNING.items():
        assert spec.get("healthcheck", {}).get("test"), name
    for name, spec in ARCHIVER_SERVICES.items():
        env = spec["environment"]
        port = env[f"{prefix(name)}METRICS_PORT"]
        assert env[f"{prefix(name)}METRICS_HOST"] == "0.0.0.0"
        probe = spec["healthcheck"]["test"]
        assert probe[:3] == ["CMD", "python", "-c"], name
        assert f"http://127.0.0.1:{port}/readyz" in probe[3], name


def test_prometheus_scrapes_every_archiver_service_on_its_monitoring_port() -> None:
    """deploy/prometheus.yml's targets are the compose services at their METRICS_PORT."""
    (job,) = PROMETHEUS["scrape_configs"]
    targets = {
        target: group["labels"]["service"]
        for group in job["static_configs"]
        for target in group["targets"]
    }
    expected = {
        f"{name}:{spec['environment'][f'{prefix(name)}METRICS_PORT']}": name
        for name, spec in ARCHIVER_SERVICES.items()
    }
    assert targets == expected
    assert job["metrics_path"] == "/metrics"
    mounted = {c["source"]: c["target"] for c in COMPOSE["services"]["prometheus"]["configs"]}
    assert COMPOSE["configs"]["prometheus_conf"]["file"] == "./deploy/prometheus.yml"
    assert mounted["prometheus_conf"] == "/etc/prometheus/prometheus.yml"


def test_grafana_is_provisioned_with_prometheus_and_the_dashboard() -> None:
    """Every file compose mounts into Grafana exists; the dashboard uses the provisioned uid."""
    grafana = COMPOSE["services"]["grafana"]
    files = {
        c["source"]: ROOT / COMPOSE["configs"][c["source"]]["file"] for c in grafana["configs"]
    }
    assert all(path.is_file() for path in files.values()), files
    datasources = yaml.safe_load(files["grafana_datasources"].read_text())["datasources"]
    (datasource,) = datasources
    assert datasource["url"] == "http://prometheus:9090"
    uids = {
        panel["datasource"]["uid"] for panel in dashboard_panels() if panel.get("type") != "row"
    }
    assert uids == {datasource["uid"]}


def test_clients_get_urls_for_the_public_s3_endpoint() -> None:
    """Presigned upload and download URLs are signed for a host clients reach, not minio:9000."""
    gateway = COMPOSE["services"]["gateway"]["environment"]
    ltsmover = COMPOSE["services"]["ltsmover"]["environment"]
    readme = (ROOT / "README.md").read_text()
    env_example = readme[readme.index("cat > .env <<'ENV'") : readme.index("\nENV\n")]

    assert "GATEWAY_PRESIGN_ENDPOINT" in gateway
    assert "LTSMOVER_RETRIEVAL_PUBLIC_ENDPOINT" in ltsmover
    assert "minio:9000" not in gateway["GATEWAY_PRESIGN_ENDPOINT"]
    assert "minio:9000" not in ltsmover["LTSMOVER_RETRIEVAL_PUBLIC_ENDPOINT"]
    assert "GATEWAY_PRESIGN_ENDPOINT=" in env_example
    assert "LTSMOVER_RETRIEVAL_PUBLIC_ENDPOINT=" in env_example


def test_minio_notifies_whichever_nats_server_is_up() -> None:
    """MinIO's one NATS address is a name every cluster member answers to (a DNS alias)."""
    address = COMPOSE["services"]["minio"]["environment"]["MINIO_NOTIFY_NATS_ADDRESS_PRIMARY"]
    host, _, port = address.rpartition(":")
    nodes = [name for name in COMPOSE["services"] if re.fullmatch(r"nats\d", name)]

    assert port == "4222"
    assert len(nodes) == 3
    for node in nodes:
        assert host in COMPOSE["services"][node]["networks"]["default"]["aliases"], node


def dashboard_panels() -> list[dict]:
    path = ROOT / "deploy" / "grafana" / "dashboards" / "archiver.json"
    return yaml.safe_load(path.read_text())["panels"]


async def healthcheck_exit_code(ready: bool) -> int:
    """The archiver's compose healthcheck, run against a monitoring port answering `ready`."""
    health = BusHealth("probe")
    if ready:
        health.connected(
            SimpleNamespace(client=SimpleNamespace(is_connected=True), js=None, bound_consumers=())
        )
        health.serving()
    port = free_port()
    server = MonitoringServer(health, MonitoringAddress("127.0.0.1", port))
    (probe,) = [spec["healthcheck"]["test"][3] for spec in [COMPOSE["services"]["verifier"]]]
    script = re.sub(r"127\.0\.0\.1:\d+", f"127.0.0.1:{port}", probe)
    await server.start()
    try:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-c", script, stderr=asyncio.subprocess.DEVNULL
        )
        return await process.wait()
    finally:
        await server.stop()


async def test_the_healthcheck_passes_only_when_readyz_says_ready() -> None:
    """The python one-liner compose runs exits 0 on 200 and non-zero on 503."""
    assert await healthcheck_exit_code(ready=True) == 0
    assert await healthcheck_exit_code(ready=False) == 1
