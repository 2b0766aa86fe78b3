"""schemathesis against the gateway's own OpenAPI: no 5xx, and every 4xx says why.

The gateway runs as a real process (`archiver run gateway`) against the real
nats-server, moto and the SciCat stand-in; every operation is called with
generated bodies, once without credentials and once with valid ones.
"""

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from devstack.processes import ManagedProcess, free_port, tool_path
from tests.conftest import provision_with_cli, service_env
from tests.gateway.conftest import ROOT, Scicat

MAX_EXAMPLES = 25
PORT = free_port()
BASE = f"http://127.0.0.1:{PORT}"


@pytest.fixture(scope="module")
def running_gateway(
    nats_server_process, s3_server, scicat: Scicat, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, str]]:
    """The gateway process and the credentials a well-behaved caller would have."""
    log = Path(tmp_path_factory.mktemp("fuzz")) / "gateway.log"
    provision_with_cli(nats_server_process.url)
    process = ManagedProcess(
        "gateway",
        [tool_path("archiver"), "run", "gateway"],
        log,
        env=service_env(
            nats_server_process.url,
            s3_server,
            user="gateway",
            GATEWAY_PORT=str(PORT),
            SCICAT_URL=scicat.url,
            SCICAT_PASSWORD="aman",
            GATEWAY_INGESTOR_GROUPS='["ingestor"]',
        ),
    )
    process.start()
    process.wait_ready(lambda: httpx.get(f"{BASE}{ROOT}/health/livez").is_success, 30)
    token = httpx.post(
        f"{BASE}{ROOT}/token",
        headers={"Authorization": f"Bearer {scicat.login('ingestor')}"},
    )
    assert token.status_code == 201, token.text
    yield {
        "bearer": f"Bearer {token.json()['access_token']}",
        "basic": httpx.BasicAuth("jobs", "jobs-password")._auth_header,
    }
    process.stop()


def _schema() -> schemathesis.BaseSchema:
    # The spec is the app's own, built without starting anything.
    from services.gateway.app import create_app
    from tests.gateway.conftest import gateway_settings

    class _Unused:
        endpoint = "http://127.0.0.1:9"
        access_key = "x"
        secret_key = "y"

    app = create_app(gateway_settings("nats://127.0.0.1:9", _Unused(), Scicat("http://x/api")))
    return schemathesis.openapi.from_dict(app.openapi())


schema = _schema()


def assert_well_behaved(response: httpx.Response | object, what: str) -> None:
    status = response.status_code  # type: ignore[attr-defined]
    body = response.text  # type: ignore[attr-defined]
    assert status < 500, f"{what} -> {status}: {body[:500]}"
    if 400 <= status < 500:
        payload = response.json()  # type: ignore[attr-defined]
        message = payload.get("detail") or payload.get("message")
        assert message, f"{what} -> {status} without a message: {body[:500]}"


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_no_operation_answers_5xx_and_every_4xx_says_why(case, running_gateway) -> None:
    """With and without valid credentials, the gateway refuses bad input politely."""
    what = f"{case.method} {case.path}"
    anonymous = case.call(base_url=BASE, timeout=30)
    assert_well_behaved(anonymous, f"{what} (no credentials)")
    credential = (
        running_gateway["basic"] if "/archiver/jobs" in case.path else running_gateway["bearer"]
    )
    authorised = case.call(base_url=BASE, headers={"Authorization": credential}, timeout=30)
    assert_well_behaved(authorised, f"{what} (valid credentials)")
