"""Request bodies read the way SciCat's body-parser setup does.

JSON is parsed for `application/json` and `application/merge-patch+json`,
urlencoded forms for `application/x-www-form-urlencoded`; any other or missing
content type leaves the body empty (`{}`), as express's parsers do.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl

from fastapi import Request

from devstack.scicat.errors import nest_error

MERGE_PATCH = "application/merge-patch+json"


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def is_merge_patch(request: Request) -> bool:
    return media_type(request) == MERGE_PATCH


async def read_body(request: Request) -> Any:
    raw = await request.body()
    kind = media_type(request)
    if kind == "application/x-www-form-urlencoded":
        return dict(parse_qsl(raw.decode("utf-8", "replace")))
    if kind not in ("application/json", MERGE_PATCH) or not raw.strip():
        return {}
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise nest_error(
            400, f"Unexpected token in JSON at position {getattr(exc, 'pos', 0)}"
        ) from exc
