"""Mongo `where` filters on stored documents, the subset SciCat's list routes pass on.

Equality on dotted paths (a path through a list matches when any element does,
and `{"a": x}` matches a list `a` containing x), the operators `$eq`, `$ne`,
`$in`, `$nin`, `$exists`, `$gt`, `$gte`, `$lt`, `$lte`, `$regex` (+`$options`),
`$not`, and the logical `$and`, `$or`, `$nor`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

_MISSING = object()


def _values_at(document: Any, parts: list[str]) -> list[Any]:
    """Every value at the dotted path, descending into lists as Mongo does."""
    if not parts:
        return [document]
    if isinstance(document, list):
        found: list[Any] = []
        if parts[0].isdigit() and int(parts[0]) < len(document):
            found += _values_at(document[int(parts[0])], parts[1:])
        for item in document:
            if isinstance(item, Mapping):
                found += _values_at(item, parts)
        return found
    if isinstance(document, Mapping) and parts[0] in document:
        return _values_at(document[parts[0]], parts[1:])
    return []


def _equal(value: Any, wanted: Any) -> bool:
    if isinstance(value, list) and not isinstance(wanted, list):
        return any(_equal(v, wanted) for v in value)
    if isinstance(value, bool) or isinstance(wanted, bool):
        return type(value) is type(wanted) and value == wanted
    return value == wanted


def _compare(value: Any, op: str, wanted: Any) -> bool:
    try:
        if op == "$gt":
            return value > wanted
        if op == "$gte":
            return value >= wanted
        if op == "$lt":
            return value < wanted
        return value <= wanted
    except TypeError:
        return False


def _condition(values: list[Any], condition: Any) -> bool:
    if not isinstance(condition, Mapping) or not any(str(k).startswith("$") for k in condition):
        if condition is None:
            return not values or any(v is None for v in values)
        return any(_equal(v, condition) for v in values)
    for op, wanted in condition.items():
        if op == "$eq":
            ok = any(_equal(v, wanted) for v in values) or (wanted is None and not values)
        elif op == "$ne":
            ok = not any(_equal(v, wanted) for v in values)
        elif op == "$in":
            ok = any(_equal(v, w) for v in values for w in wanted)
        elif op == "$nin":
            ok = not any(_equal(v, w) for v in values for w in wanted)
        elif op == "$exists":
            ok = bool(values) == bool(wanted)
        elif op in ("$gt", "$gte", "$lt", "$lte"):
            ok = any(_compare(v, op, wanted) for v in values)
        elif op == "$regex":
            flags = re.IGNORECASE if "i" in str(condition.get("$options", "")) else 0
            ok = any(isinstance(v, str) and re.search(wanted, v, flags) for v in values)
        elif op == "$options":
            continue
        elif op == "$not":
            ok = not _condition(values, wanted)
        else:
            msg = f"unknown operator: {op}"
            raise ValueError(msg)
        if not ok:
            return False
    return True


def matches(document: Mapping[str, Any], where: Mapping[str, Any]) -> bool:
    """True when `document` satisfies the Mongo filter `where`."""
    for key, condition in where.items():
        if key == "$and":
            ok = all(matches(document, sub) for sub in condition)
        elif key == "$or":
            ok = any(matches(document, sub) for sub in condition)
        elif key == "$nor":
            ok = not any(matches(document, sub) for sub in condition)
        else:
            ok = _condition(_values_at(document, str(key).split(".")), condition)
        if not ok:
            return False
    return True
