"""`archiver dev`: the whole stack on loopback, in the foreground.

Starts, in order, a real nats-server (JetStream, store under the state dir,
the deployment's users and permissions), moto's S3 server with the buckets, the
SciCat stand-in, the LTS directory, provisions the bus (as `archiver provision`
does, with the provisioner's credentials) and starts the five services, each as
its own NATS user and with its monitoring port (/metrics, /livez, /readyz);
writes `stack.json` (every URL, each service's metrics URL, the operator's NATS
credentials); watches every process and restarts one that dies, with a backoff
(`devstack/supervision.py`), giving up (and stopping the rest) only when it keeps
dying right after each restart.
"""

import asyncio
import json
import secrets
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from contracts.bus_permissions import OPERATOR, PROVISIONER, ROUTE_USER, bus_users
from contracts.streams import CONSUMERS
from devstack.natsserver import nats_server
from devstack.private_files import is_private, private_dir, write_private
from devstack.processes import ManagedProcess, StartupError, free_port, port_open, tool_path
from devstack.s3server import create_buckets, moto_ready, moto_server
from devstack.scicat.config import DEV_SITE_ENV
from devstack.supervision import GaveUp, RestartPolicy, Supervisor
from runtime.nats_connection import connect
from runtime.nats_server_config import new_passwords
from runtime.provisioning import provision_bus
from runtime.settings import NatsSettings

SERVICES = ("scicat_sync", "datablocker", "ltsmover", "verifier", "gateway")
ROOT_PATH = "/archiver/api/v1"
BUCKETS = {"landing": "landing", "archival": "archival", "retrieval": "retrieval", "lts": "lts"}
# The stand-in's dev accounts (devstack/scicat/config.py); the archiver's
# service account is archiveManager and scicat_sync creates archive jobs as
# archiveJobs, with the rights DEV_SITE_ENV grants their groups (no admin group).
OPERATOR_GROUPS = ("admin",)
"""The gateway's operator groups: SciCat's `admin` account logs in to the status page."""

SCICAT_USERS = {
    "admin": ("admin", "2jf70TPNZsS"),
    "ingestor": ("ingestor", "aman"),
    "archiver": ("archiveManager", "aman"),
    "archiver_jobs": ("archiveJobs", "ajobs"),
}


DEFAULT_METRICS_PORTS = {
    "gateway": 9180,
    "datablocker": 9181,
    "ltsmover": 9182,
    "verifier": 9183,
    "scicat_sync": 9184,
}
"""Each service's monitoring port with `--ports default` (the services' own defaults)."""


@dataclass(frozen=True)
class StackPorts:
    gateway: int
    scicat: int
    s3: int
    nats: int
    metrics: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_METRICS_PORTS))
    """Each service's monitoring port (/metrics, /livez, /readyz), by service."""

    @classmethod
    def choose(cls, mode: str) -> "StackPorts":
        if mode == "auto":
            metrics = {service: free_port() for service in SERVICES}
            return cls(free_port(), free_port(), free_port(), free_port(), metrics)
        if mode == "default":
            return cls(8000, 3000, 9000, 4222)
        msg = f"--ports must be 'default' or 'auto', not {mode!r}"
        raise ValueError(msg)


@dataclass(frozen=True)
class DevSecrets:
    """Random per state dir, kept there so a restarted stack keeps its credentials."""

    s3_access_key: str
    s3_secret_key: str
    job_user: str
    job_password: str
    token_secret: str
    nats_passwords: dict[str, str]
    """Per NATS user (each service, provisioner, operator, minio, route): its password."""

    @classmethod
    def load_or_create(cls, state_dir: Path) -> "DevSecrets":
        path = state_dir / "secrets.json"
        fresh = {
            "s3_access_key": "devstack",
            "s3_secret_key": secrets.token_urlsafe(24),
            "job_user": "scicat-jobs",
            "job_password": secrets.token_urlsafe(24),
            "token_secret": secrets.token_urlsafe(32),
            "nats_passwords": new_passwords([*(u.name for u in bus_users()), ROUTE_USER]),
        }
        stored = json.loads(path.read_text()) if path.exists() else {}
        kept = cls(**{**fresh, **stored})
        # New, from a release that kept fewer secrets, or written by an older stack
        # with looser permissions: (re)write it mode 600.
        if stored != asdict(kept) or not is_private(path):
            private_dir(state_dir)
            write_private(path, json.dumps(asdict(kept), indent=2))
        return kept


class DevStack:
    """The embedded stack; `start()` brings everything up or raises StartupError."""

    def __init__(
        self,
        state_dir: Path,
        ports: StackPorts,
        lts_backend: str = "posix",
        *,
        external_nats: str | None = None,
        stream_replicas: int = 1,
        instances: Mapping[str, int] | None = None,
        s3_snapshots: bool = True,
    ) -> None:
        """`external_nats`: comma-separated URLs of a NATS (cluster) started elsewhere;
        the stack then starts no nats-server of its own (`ports.nats` is unused).
        `instances`: how many processes of a service to run (default one each); the
        second of the datablocker is `datablocker-2` in `processes` and the logs.
        `s3_snapshots`: keep S3's state in the state dir across restarts (see
        `devstack/s3_snapshots.py`); a benchmark may turn it off, as a snapshot
        holds writes back while it is taken."""
        self.state_dir = state_dir
        self.ports = ports
        self.lts_backend = lts_backend
        self.external_nats = external_nats
        self.stream_replicas = stream_replicas
        self.instances = dict(instances or {})
        self.s3_snapshots = s3_snapshots
        self._instance_ports: dict[str, int] = {}
        self.logs = state_dir / "logs"
        self.lts_root = state_dir / "lts"
        self.processes: dict[str, ManagedProcess] = {}
        self.supervisor: Supervisor | None = None
        private_dir(state_dir)
        self.secrets = DevSecrets.load_or_create(state_dir)

    # --- descriptions -----------------------------------------------------
    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.gateway}{ROOT_PATH}"

    @property
    def scicat_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.scicat}/api"

    @property
    def s3_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports.s3}"

    def monitoring_url(self, service: str) -> str:
        """The monitoring port of a service (or of an extra instance, `datablocker-2`):
        `/metrics`, `/livez`, `/readyz` below it."""
        port = self.ports.metrics.get(service) or self._instance_ports[service]
        return f"http://127.0.0.1:{port}"

    def _instance_env(self, service: str, name: str) -> dict[str, str]:
        """An extra instance's own monitoring port (the service's is the first instance's)."""
        if name == service:
            return {}
        port = self._instance_ports.setdefault(name, free_port())
        return {f"{service.upper()}_METRICS_PORT": str(port)}

    def monitoring_env(self) -> dict[str, str]:
        """Every service's monitoring port (each service reads the one with its prefix)."""
        return {
            f"{service.upper()}_METRICS_PORT": str(self.ports.metrics[service])
            for service in SERVICES
        }

    @property
    def nats_url(self) -> str:
        if self.external_nats:
            return self.external_nats
        return f"nats://127.0.0.1:{self.ports.nats}"

    def nats_settings(self, user: str) -> NatsSettings:
        """Connecting to the stack's NATS as `user` (a service, provisioner or operator)."""
        return NatsSettings(
            url=self.nats_url,
            user=user,
            password=self.secrets.nats_passwords[user],
            stream_replicas=self.stream_replicas,
        )

    def service_env(self) -> dict[str, str]:
        """The environment every service gets: the same names compose.yml sets."""
        scicat_user, scicat_password = SCICAT_USERS["archiver"]
        return {
            "NATS_URL": self.nats_url,
            "NATS_STREAM_REPLICAS": str(self.stream_replicas),
            "S3_ENDPOINT": self.s3_endpoint,
            "S3_ACCESS_KEY": self.secrets.s3_access_key,
            "S3_SECRET_KEY": self.secrets.s3_secret_key,
            "S3_LANDING_BUCKET": BUCKETS["landing"],
            "S3_ARCHIVAL_BUCKET": BUCKETS["archival"],
            "S3_RETRIEVAL_BUCKET": BUCKETS["retrieval"],
            "SCICAT_URL": self.scicat_url,
            "SCICAT_USERNAME": scicat_user,
            "SCICAT_PASSWORD": scicat_password,
            "LTS_BACKEND": self.lts_backend,
            "LTS_ROOT": str(self.lts_root),
            "LTS_BUCKET": BUCKETS["lts"],
            "GATEWAY_PORT": str(self.ports.gateway),
            "GATEWAY_ROOT_PATH": ROOT_PATH,
            "GATEWAY_JOB_USER": self.secrets.job_user,
            "GATEWAY_JOB_PASSWORD": self.secrets.job_password,
            "GATEWAY_TOKEN_SECRET": self.secrets.token_secret,
            "GATEWAY_OPERATOR_GROUPS": json.dumps(OPERATOR_GROUPS),
            "LOG_FORMAT": "json",
            # moto restores GLACIER objects at once and the LTS dir never goes
            # offline: poll for recalls every second instead of the production 10 s.
            "VERIFIER_RECALL_POLL_S": "1",
            "LTSMOVER_RECALL_POLL_S": "1",
            # moto has no real credentials; keep boto-style lookups from reaching out.
            "AWS_EC2_METADATA_DISABLED": "true",
            **self.monitoring_env(),
        }

    def description(self) -> dict[str, Any]:
        """The content of stack.json: where everything is and how to log in."""
        return {
            "gateway": {
                "url": self.gateway_url,
                "job_user": self.secrets.job_user,
                "job_password": self.secrets.job_password,
            },
            "status_page": {
                "url": f"{self.gateway_url}/status",
                "operator_groups": list(OPERATOR_GROUPS),
                "login": "admin",
                "login_note": "log in with scicat.users.admin (a member of operator_groups)",
            },
            "scicat": {
                "url": self.scicat_url,
                "users": {
                    role: {"username": user, "password": password}
                    for role, (user, password) in SCICAT_USERS.items()
                },
            },
            "s3": {
                "endpoint": self.s3_endpoint,
                "access_key": self.secrets.s3_access_key,
                "secret_key": self.secrets.s3_secret_key,
                "buckets": dict(BUCKETS),
            },
            "nats": {
                "url": self.nats_url,
                "user": OPERATOR,
                "password": self.secrets.nats_passwords[OPERATOR],
            },
            "lts": {"backend": self.lts_backend, "root": str(self.lts_root)},
            "logs": str(self.logs),
            "pids": {name: process.pid for name, process in self.processes.items()},
            "restarts": self.supervisor.restarts() if self.supervisor else {},
            "metrics": {service: f"{self.monitoring_url(service)}/metrics" for service in SERVICES},
            "health": {
                service: {
                    "livez": f"{self.monitoring_url(service)}/livez",
                    "readyz": f"{self.monitoring_url(service)}/readyz",
                }
                for service in SERVICES
            },
        }

    # --- components -------------------------------------------------------
    def _scicat_process(self) -> ManagedProcess:
        job_config = Path(__file__).parent / "scicat" / "jobconfig.example.yaml"
        return ManagedProcess(
            name="scicat",
            argv=[
                sys.executable, "-m", "devstack.scicat",
                "--port", str(self.ports.scicat),
                "--state-dir", str(self.state_dir / "scicat"),
                "--job-config", str(job_config),
            ],
            log_path=self.logs / "scicat.log",
            # SciCat's site configuration (group lists) and what the job config's
            # url action reads from SciCat's environment.
            env={
                **DEV_SITE_ENV,
                "ARCHIVER_JOBS_URL": f"{self.gateway_url}/archiver/jobs",
                "ARCHIVER_JOB_USER": self.secrets.job_user,
                "ARCHIVER_JOB_PASSWORD": self.secrets.job_password,
            },
        )  # fmt: skip

    def instance_names(self, service: str) -> list[str]:
        """The process names of a service: `datablocker`, `datablocker-2`, ..."""
        count = max(1, self.instances.get(service, 1))
        return [service, *(f"{service}-{n}" for n in range(2, count + 1))]

    def service_process(self, service: str, name: str | None = None) -> ManagedProcess:
        env = self.service_env()
        if service == "scicat_sync":  # only scicat_sync creates jobs
            job_user, job_password = SCICAT_USERS["archiver_jobs"]
            env["SCICAT_SYNC_JOB_CREATOR_USERNAME"] = job_user
            env["SCICAT_SYNC_JOB_CREATOR_PASSWORD"] = job_password
        return ManagedProcess(
            name=name or service,
            argv=[tool_path("archiver"), "run", service],
            log_path=self.logs / f"{name or service}.log",
            env={
                **env,
                **self._instance_env(service, name or service),
                "NATS_USER": service,
                "NATS_PASSWORD": self.secrets.nats_passwords[service],
            },
        )

    def start(self, timeout_s: float = 30.0) -> None:
        """Start every component, in dependency order, each waited for."""
        self.lts_root.mkdir(parents=True, exist_ok=True)
        s3 = self.processes["s3"] = moto_server(
            self.ports.s3,
            self.logs / "s3.log",
            self.state_dir / "s3" if self.s3_snapshots else None,
        )
        scicat = self.processes["scicat"] = self._scicat_process()
        if self.external_nats is None:
            nats = self.processes["nats"] = nats_server(
                self.ports.nats,
                self.state_dir / "nats",
                self.logs / "nats.log",
                passwords=self.secrets.nats_passwords,
            )
            nats.start()
        for process in (s3, scicat):
            process.start()
        if self.external_nats is None:
            nats.wait_ready(lambda: port_open(self.ports.nats), timeout_s)
        self._s3_ready(timeout_s)
        self._scicat_ready(timeout_s)
        asyncio.run(provision_bus(self.nats_settings(PROVISIONER), wait_s=timeout_s))
        for service in SERVICES:
            for name in self.instance_names(service):
                self.processes[name] = self.service_process(service, name)
                self.processes[name].start()
        self.processes["gateway"].wait_ready(
            lambda: self._http_ok(f"{self.gateway_url}/health/readyz"), timeout_s
        )
        self._wait_services_ready(timeout_s)
        (self.state_dir / "stack.json").write_text(json.dumps(self.description(), indent=2))

    def _s3_ready(self, timeout_s: float) -> None:
        """moto answers and has the buckets (kept from its state file, or created now)."""
        self.processes["s3"].wait_ready(lambda: moto_ready(self.ports.s3), timeout_s)
        create_buckets(
            self.s3_endpoint,
            self.secrets.s3_access_key,
            self.secrets.s3_secret_key,
            list(BUCKETS.values()),
        )

    def _scicat_ready(self, timeout_s: float) -> None:
        self.processes["scicat"].wait_ready(
            lambda: self._http_ok(f"{self.scicat_url}/v3/health"), timeout_s
        )

    def supervise(self, report: Callable[[str], None], policy: RestartPolicy) -> Supervisor:
        """A supervisor restarting any of this stack's processes that dies.

        Every process is restarted, NATS, S3 and SciCat included: JetStream and the
        SciCat stand-in keep their state in the state dir, and S3 saves its own
        (`devstack/moto_main.py`), so a restarted one comes back with its data.
        NATS, S3 and SciCat are waited for (the services need them); a service is
        only started, and reconnects on its own."""
        after_start: dict[str, Callable[[], None]] = {
            "s3": lambda: self._s3_ready(15.0),
            "scicat": lambda: self._scicat_ready(15.0),
        }
        if "nats" in self.processes:
            after_start["nats"] = lambda: self.processes["nats"].wait_ready(
                lambda: port_open(self.ports.nats), 15.0
            )
        self.supervisor = Supervisor(self.processes, policy, report, after_start)
        return self.supervisor

    def _wait_services_ready(self, timeout_s: float) -> None:
        """Each service's /readyz: connected to NATS, every durable it reads bound."""
        deadline = time.monotonic() + timeout_s
        for service in SERVICES:
            for name in self.instance_names(service):
                readyz = f"{self.monitoring_url(name)}/readyz"
                self.processes[name].wait_ready(
                    lambda url=readyz: self._http_ok(url), max(0.1, deadline - time.monotonic())
                )
        self.write_description()

    def write_description(self) -> None:
        """stack.json holds passwords and keys: mode 600, in a state dir only its owner enters."""
        write_private(self.state_dir / "stack.json", json.dumps(self.description(), indent=2))

    @staticmethod
    def _http_ok(url: str) -> bool:
        try:
            return httpx.get(url, timeout=2.0).is_success
        except httpx.HTTPError:
            return False

    def health(self) -> dict[str, str]:
        """Each component: 'ok' or what is wrong."""
        report: dict[str, str] = {}
        for name, process in self.processes.items():
            report[name] = "ok" if process.running() else f"exited ({process.popen.returncode})"  # type: ignore[union-attr]
        if report.get("nats") == "ok":
            for service, consuming in asyncio.run(self._services_consuming()).items():
                if report.get(service) == "ok" and not consuming:
                    report[service] = "running, but not pulling from its durable consumers"
        if report.get("gateway") == "ok":
            try:
                response = httpx.get(f"{self.gateway_url}/health/readyz", timeout=5.0)
                if not response.is_success:
                    report["gateway"] = f"not ready: {response.json().get('detail')}"
            except httpx.HTTPError as exc:
                report["gateway"] = f"unreachable: {exc}"
        return report

    async def _services_consuming(self) -> dict[str, bool]:
        """A bus service is healthy when each of its durables has a pull waiting."""
        client = await connect(self.nats_settings(OPERATOR), "archiver-dev-health")
        try:
            js = client.jetstream()
            consuming: dict[str, bool] = {}
            for spec in CONSUMERS:
                deadline = time.monotonic() + 10
                waiting = False
                while not waiting and time.monotonic() < deadline:
                    info = await js.consumer_info(spec.stream, spec.durable)
                    waiting = info.num_waiting > 0
                    if not waiting:
                        await asyncio.sleep(0.1)
                consuming[spec.service] = consuming.get(spec.service, True) and waiting
            return consuming
        finally:
            await client.close()

    def stop(self) -> None:
        """Services first (they finish or nak in-flight work), then what they depend on."""
        order = [
            *(name for service in reversed(SERVICES) for name in self.instance_names(service)),
            "scicat",
            "s3",
            "nats",
        ]
        for name in order:
            if name in self.processes:
                self.processes[name].stop()


def run_dev_stack(
    state_dir: Path,
    *,
    ports: str,
    check_only: bool,
    restart_policy: RestartPolicy | None = None,
) -> int:
    """Run the stack until Ctrl-C/SIGTERM (exit 0) or until a component keeps dying
    right after its restarts (exit 1); a component that dies is restarted with a backoff."""
    restart_policy = restart_policy or RestartPolicy()
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console()
    stack = DevStack(state_dir, StackPorts.choose(ports))
    stopping = threading.Event()

    def request_stop(signum: int, _frame: object) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    started = time.monotonic()
    try:
        stack.start()
    except StartupError as exc:
        console.print(f"[red]start-up failed[/red]: {exc}")
        stack.stop()
        return 1
    table = Table(title=f"archiver dev stack (up in {time.monotonic() - started:.1f} s)")
    for column in ("component", "health", "where", "log"):
        table.add_column(column, overflow="fold")
    where = {
        "nats": stack.nats_url,
        "s3": stack.s3_endpoint,
        "scicat": stack.scicat_url,
        **{service: f"metrics {stack.monitoring_url(service)}/metrics" for service in SERVICES},
        "gateway": (
            f"{stack.gateway_url}, status page {stack.gateway_url}/status (SciCat admin),"
            f" metrics {stack.monitoring_url('gateway')}/metrics"
        ),
    }
    health = stack.health()
    for name, process in stack.processes.items():
        table.add_row(
            name, health[name], where.get(name, f"pid {process.pid}"), str(process.log_path)
        )
    console.print(table)
    console.print(f"stack.json: {state_dir / 'stack.json'}   LTS: {stack.lts_root}")
    unhealthy = {name: state for name, state in health.items() if state != "ok"}
    if check_only or unhealthy:
        stack.stop()
        if unhealthy:
            console.print(f"[red]unhealthy[/red]: {unhealthy}")
            return 1
        console.print("[green]every component healthy[/green]; stopped")
        return 0
    console.print("Ctrl-C stops the stack.")
    supervisor = stack.supervise(
        lambda line: console.print(line, markup=False, highlight=False), restart_policy
    )
    while not stopping.wait(0.5):
        try:
            if supervisor.check():
                stack.write_description()
        except GaveUp as exc:
            console.print(f"[red]{escape(str(exc))}[/red]\nstopping the stack.", highlight=False)
            stack.stop()
            return 1
    console.print("stopping…")
    stack.stop()
    return 0
