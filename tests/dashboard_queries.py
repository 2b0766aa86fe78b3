"""The Grafana dashboard's PromQL queries (deploy/grafana/) and the metric names they select."""

import json
import re
from pathlib import Path

DASHBOARD = Path(__file__).parents[1] / "deploy" / "grafana" / "dashboards" / "archiver.json"

_PROMQL_WORDS = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool"}
)


def queries() -> list[str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [target["expr"] for panel in panels for target in panel.get("targets", [])]


def metric_names(expr: str) -> set[str]:
    """The series names a PromQL expression selects: identifiers that are not functions
    (followed by `(`), keywords, label names in `{...}` or grouping lists, or durations."""
    bare = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # label values
    bare = re.sub(r"\{[^}]*\}", "", bare)  # label matchers
    bare = re.sub(r"\[[^\]]*\]", "", bare)  # range durations
    bare = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", bare)  # grouping labels
    return {
        name
        for name in re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*(?!\s*\()\b", bare)
        if name not in _PROMQL_WORDS and not re.fullmatch(r"[0-9.e]+", name)
    }
