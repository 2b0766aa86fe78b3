"""Durations and points in time as an operator types them (`30m`, `2h`, `2025-01-31T12:00`)."""

import re
from datetime import UTC, datetime, timedelta

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")


def parse_duration(text: str) -> timedelta:
    """`90s`, `30m`, `2h`, `1d`, or a bare number of minutes."""
    match = _DURATION.match(text)
    if match:
        return timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])
    try:
        return timedelta(minutes=float(text))
    except ValueError:
        msg = f"not a duration: {text!r} (try 90s, 30m, 2h or 1d)"
        raise ValueError(msg) from None


def parse_point_in_time(text: str, now: datetime) -> datetime:
    """An ISO 8601 time (UTC when no offset is given), or a duration ago (`2h`)."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        try:
            return now - parse_duration(text)
        except ValueError:
            msg = f"not a time: {text!r} (ISO 8601 like 2025-01-31T12:00Z, or 2h for two hours ago)"
            raise ValueError(msg) from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)
