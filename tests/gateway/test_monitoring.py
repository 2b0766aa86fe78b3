"""The gateway's monitoring port (as on every service) and its own health routes."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from nats.js import JetStreamContext

from contracts import streams
from devstack.processes import free_port
from runtime.provisioning import provision
from services.gateway.app import create_app
from services.gateway.settings import GatewaySettings
from tests.gateway.conftest import ROOT, Scicat, gateway_settings
from tests.scraping import grew, scrape


@asynccontextmanager
async def gateway_on(settings: GatewaySettings) -> AsyncIterator[httpx.AsyncClient]:
    """The gateway's lifespan running, its API through an in-process client."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:
            yield http


async def test_the_gateway_serves_health_and_counts_requests_by_route(
    clean_js: JetStreamContext, nats_server_process, s3_server, scicat: Scicat
) -> None:
    """/livez, /readyz and /metrics on the monitoring port; requests counted by route template."""
    await provision(clean_js)
    port = free_port()
    settings = gateway_settings(nats_server_process.url, s3_server, scicat, metrics_port=port)
    async with (
        gateway_on(settings) as api,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as monitoring,
    ):
        before = await scrape(port)
        livez = await monitoring.get("/livez")
        readyz = await monitoring.get("/readyz")
        health = await api.get(f"{ROOT}/health/readyz")
        refused = await api.post(f"{ROOT}/token")
        missing = await api.get("/wp-login.php")
        after = await scrape(port)

    requests = "archiver_http_requests_total"
    assert (livez.status_code, readyz.status_code) == (200, 200)
    assert readyz.json() == {"status": "ok"}
    assert health.status_code == 200
    assert refused.status_code == 401
    assert grew(before, after, requests, route="/health/readyz", status="200") == 1
    assert grew(before, after, requests, route="/token", method="POST", status="401") == 1
    assert grew(before, after, requests, route="unmatched", status="404") == 1
    assert missing.status_code == 404


async def test_health_readyz_names_a_durable_lost_from_the_server(
    clean_js: JetStreamContext, nats_server_process, s3_server, scicat: Scicat
) -> None:
    """The MinIO notification durable deleted under the gateway: both readiness routes say so."""
    await provision(clean_js)
    port = free_port()
    settings = gateway_settings(nats_server_process.url, s3_server, scicat, metrics_port=port)
    async with (
        gateway_on(settings) as api,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as monitoring,
    ):
        await clean_js.delete_consumer(
            streams.GATEWAY_MINIO_EVENTS.stream, streams.GATEWAY_MINIO_EVENTS.durable
        )
        health = await api.get(f"{ROOT}/health/readyz")
        readyz = await monitoring.get("/readyz")

    assert health.status_code == 503
    assert health.json()["detail"] == "Not ready: consumers unreachable"
    assert health.json()["failing"] == {
        "consumers": "RuntimeError: durable consumer(s) gateway--minio_events not found on the "
        "NATS server"
    }
    assert readyz.status_code == 503
