"""Reading a service's monitoring port as Prometheus would: GET /metrics, parse the samples."""

from dataclasses import dataclass

import httpx
from prometheus_client.parser import text_string_to_metric_families

_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}


@dataclass(frozen=True)
class Scrape:
    """One scrape's samples: (series name, labels) -> value."""

    samples: tuple[tuple[str, dict[str, str], float], ...]
    families: tuple[tuple[str, str], ...] = ()
    """(name, type) of every metric declared, with samples yet or not."""

    def value(self, name: str, **labels: str) -> float:
        """The sum of `name`'s samples carrying `labels` (0 when there is none)."""
        return sum(
            value
            for sample_name, sample_labels, value in self.samples
            if sample_name == name and labels.items() <= sample_labels.items()
        )

    @property
    def exported_names(self) -> frozenset[str]:
        """Every series name the declared metrics can have (a counter's `_total`, ...)."""
        return frozenset(
            f"{name}{suffix}"
            for name, kind in self.families
            for suffix in _SUFFIXES.get(kind, ("",))
        )


def grew(before: Scrape, after: Scrape, name: str, **labels: str) -> float:
    """How much `name` (summed over the samples carrying `labels`) grew between two scrapes."""
    return after.value(name, **labels) - before.value(name, **labels)


def parse(text: str) -> Scrape:
    families = list(text_string_to_metric_families(text))
    return Scrape(
        samples=tuple(
            (sample.name, dict(sample.labels), sample.value)
            for family in families
            for sample in family.samples
        ),
        families=tuple((family.name, family.type) for family in families),
    )


async def scrape(port: int) -> Scrape:
    """GET /metrics on a monitoring port of this host (from inside the service's event loop)."""
    async with httpx.AsyncClient(timeout=5) as http:
        response = await http.get(f"http://127.0.0.1:{port}/metrics")
    response.raise_for_status()
    return parse(response.text)


def scrape_sync(url: str) -> Scrape:
    """GET a /metrics URL of a service in another process."""
    response = httpx.get(url, timeout=5)
    response.raise_for_status()
    return parse(response.text)
