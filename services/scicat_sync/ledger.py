"""What scicat_sync has applied to SciCat, kept in a JetStream KV bucket.

Per target (a dataset's lifecycle, a job's status) one key holds, per field,
the `occurred_at` of the newest event that claimed it and the value it wrote.
A claim is a compare-and-set on the key's revision, so two instances never
both believe they hold the newest value. An event whose field was claimed by a
strictly newer event skips that field; an equal time is the same event
redelivered and is applied again (a crash may have cut the first write short).
"""

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from contracts import kv
from runtime.kvstore import open_bucket

# Conflicts resolve in one or two rounds; more means something is badly wrong.
_MAX_CAS_ROUNDS = 20


async def open_ledger(js: JetStreamContext, replicas: int = 1) -> "AppliedLedger":
    """The ledger on the `scicat_sync_applied` bucket, created if missing."""
    bucket = await open_bucket(
        js,
        kv.SCICAT_SYNC_APPLIED,
        replicas,
        description="scicat_sync: newest update applied per SciCat target and field",
    )
    return AppliedLedger(bucket)


class LedgerConflict(Exception):
    """Compare-and-set kept failing; the message is retried later."""


class AppliedLedger:
    def __init__(self, bucket: KeyValue) -> None:
        self._bucket = bucket

    async def claim(self, key: str, at: datetime, changes: Mapping[str, Any]) -> dict[str, Any]:
        """Record `changes` as applied at `at`; return the ones no newer event claimed."""
        for _ in range(_MAX_CAS_ROUNDS):
            stored, revision = await self._read(key)
            fresh = {
                field: value
                for field, value in changes.items()
                if field not in stored or _at(stored[field]) <= at
            }
            if not fresh:
                return {}
            updated = {
                **stored,
                **{f: {"at": at.isoformat(), "value": v} for f, v in fresh.items()},
            }
            if updated == stored:
                return fresh
            if await self._write(key, updated, revision):
                return fresh
        msg = f"ledger key {key}: compare-and-set lost {_MAX_CAS_ROUNDS} times"
        raise LedgerConflict(msg)

    async def claimed_after(self, key: str, at: datetime, fields: list[str]) -> dict[str, Any]:
        """The values of `fields` that a newer event claimed since (to write them again)."""
        stored, _ = await self._read(key)
        return {f: stored[f]["value"] for f in fields if f in stored and _at(stored[f]) > at}

    async def recall(self, key: str) -> dict[str, Any] | None:
        stored, _ = await self._read(key)
        return stored or None

    async def remember(self, key: str, value: dict[str, Any]) -> None:
        await self._bucket.put(key, json.dumps(value).encode())

    async def forget(self, key: str) -> None:
        await self._bucket.delete(key)

    async def _read(self, key: str) -> tuple[dict[str, Any], int | None]:
        try:
            entry = await self._bucket.get(key)
        except KeyNotFoundError:
            # Also raised for a deleted key; its revision then lives on in the stream,
            # so a plain create works (create accepts a key whose last op is a delete).
            return {}, None
        return json.loads(entry.value or b"{}"), entry.revision

    async def _write(self, key: str, value: dict[str, Any], revision: int | None) -> bool:
        data = json.dumps(value).encode()
        try:
            if revision is None:
                await self._bucket.create(key, data)
            else:
                await self._bucket.update(key, data, last=revision)
        except KeyWrongLastSequenceError:
            return False
        return True


def _at(record: Mapping[str, Any]) -> datetime:
    return datetime.fromisoformat(record["at"])
