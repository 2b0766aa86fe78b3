"""Readiness: which dependency is down, named, so an operator knows where to look."""

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

import httpx

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
        except (OSError, httpx.HTTPError, TimeoutError, RuntimeError) as exc:
            failing[name] = f"{type(exc).__name__}: {exc}"[:300]
    return Readiness(ready=not failing, failing=failing)
