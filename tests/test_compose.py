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
from contracts.bus_permissions import bus_users, password_variable
from devstack.processes import free_port
from runtime.monitoring import BusHealth, MonitoringAddress, MonitoringServer
from runtime.settings import LogSettings, NatsSettings

ROOT = Path(__file__).parents[1]
COMPOSE = yaml.safe_load((ROOT / "compose.yml").read_text())
ARCHIVER_SERVICES = {
    name: spec
    for name, spec in COMPOSE["services"].items()
    if spec.get("build") == "." and spec["command"][0] == "run"
}
LONG_RUNNING = {
    name: spec for name, spec in COMPOSE["services"].items() if spec.get("restart") != "no"
}
PROMETHEUS = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())
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
    assert {
        "./deploy/nats.conf",
        "./deploy/nats-cluster.conf",
    } <= {c["file"] for c in COMPOSE["configs"].values()}


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
    # Monitoring only on each container's loopback, for its own healthcheck.
    assert 'http: "127.0.0.1:8222"' in (ROOT / "deploy" / "nats-cluster.conf").read_text()


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
    """deploy/prometheus.yml's targets are the compose services at their METRICS_PORT: a
    service with replicas through DNS (one target per replica), the others by name."""
    (job,) = PROMETHEUS["scrape_configs"]
    static = {
        target: group["labels"]["service"]
        for group in job["static_configs"]
        for target in group["targets"]
    }
    discovered = {
        f"{name}:{group['port']}": name
        for group in job["dns_sd_configs"]
        for name in group["names"]
        if group["type"] == "A"
    }
    port = {
        name: spec["environment"][f"{prefix(name)}METRICS_PORT"]
        for name, spec in ARCHIVER_SERVICES.items()
    }
    replicated = {name for name, spec in ARCHIVER_SERVICES.items() if "deploy" in spec}
    assert replicated == {"datablocker", "ltsmover", "verifier", "scicat_sync"}
    assert discovered == {f"{name}:{port[name]}": name for name in replicated}
    assert static == {
        f"{name}:{port[name]}": name for name in ARCHIVER_SERVICES if name not in replicated
    }
    assert job["relabel_configs"] == [
        {"source_labels": ["__meta_dns_name"], "regex": "(.+)", "target_label": "service"}
    ]
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
    # scicat_sync signs retrieve jobs' download URLs when it writes them to SciCat.
    scicat_sync = COMPOSE["services"]["scicat_sync"]["environment"]
    readme = (ROOT / "README.md").read_text()
    deployment = readme[readme.index("## Deploying with compose.yml") :]

    assert "minio:9000" not in gateway["GATEWAY_PRESIGN_ENDPOINT"]
    assert "minio:9000" not in scicat_sync["SCICAT_SYNC_RETRIEVAL_PUBLIC_ENDPOINT"]
    assert "echo GATEWAY_PRESIGN_ENDPOINT=" in deployment
    assert "echo RETRIEVAL_PUBLIC_ENDPOINT=" in deployment


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


WORKERS = ("datablocker", "ltsmover", "verifier", "scicat_sync")


@pytest.mark.parametrize("name", WORKERS)
def test_every_worker_runs_as_several_replicas_with_nothing_bound_to_one(name: str) -> None:
    """Replicas by default (overridable in .env); no host port or container name pins one."""
    spec = COMPOSE["services"][name]
    replicas = spec["deploy"]["replicas"]
    default = int(replicas.rsplit(":-", 1)[1].rstrip("}"))
    assert replicas.startswith(f"${{{name.upper()}_REPLICAS:-")
    assert default >= 2
    assert "ports" not in spec
    assert "container_name" not in spec
