"""Readiness: which dependency is down, named, so an operator knows where to look."""

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from runtime.scicat import ScicatError

Probe = Callable[[], Awaitable[None]]


@dataclass(frozen=True)
class Readiness:
    ready: bool
    failing: dict[str, str]


async def check_readiness(probes: Mapping[str, Probe]) -> Readiness:
    failing: dict[str, str] = {}
    for name, probe in probes.items():
        try:
            await probe()
        except (OSError, ScicatError, TimeoutError, RuntimeError) as exc:
            failing[name] = f"{type(exc).__name__}: {exc}"[:300]
    return Readiness(ready=not failing, failing=failing)


def build_health_router(probes: Callable[[Request], Mapping[str, Probe]]) -> APIRouter:
    """`/health/livez` (the process is up) and `/health/readyz` (every probe answers).

    `probes` gives the readiness probes of the app serving the request.
    """
    health = APIRouter(prefix="/health", tags=["health"])

    @health.get("/livez")
    async def livez() -> dict[str, str]:
        """The process is up (no dependency checked)."""
        return {"status": "ok"}

    @health.get("/readyz", responses={503: {"description": "A dependency is down"}})
    async def readyz(request: Request) -> JSONResponse:
        """NATS, S3 and SciCat answer; a 503 names the ones that do not."""
        readiness = await check_readiness(probes(request))
        if readiness.ready:
            return JSONResponse({"status": "ok"})
        failing = ", ".join(sorted(readiness.failing))
        return JSONResponse(
            {
                "status": "unavailable",
                "detail": f"Not ready: {failing} unreachable",
                "failing": readiness.failing,
            },
            status_code=503,
        )

    return health
