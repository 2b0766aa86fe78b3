"""What scicat_sync has applied to SciCat, kept in a JetStream KV bucket.

Per target (a dataset's lifecycle, a job's status) one key holds, per field,
the `occurred_at` of the newest event that claimed it and the value it wrote.
A claim is a compare-and-set on the key's revision, so two instances never
both believe they hold the newest value. An event whose field was claimed by a
strictly newer event skips that field; an equal time is the same event
redelivered and is applied again (a crash may have cut the first write short).
"""

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pydantic import BaseModel, RootModel, field_serializer

from contracts import kv
from runtime.kvstore import JetStream, KvBucket, KvRecords, open_bucket

# Conflicts resolve in one or two rounds; more means something is badly wrong.
_MAX_CAS_ROUNDS = 20


async def open_ledger(js: JetStream) -> "AppliedLedger":
    """The ledger on the `scicat_sync_applied` bucket."""
    return AppliedLedger(await open_bucket(js, kv.SCICAT_SYNC_APPLIED))


class Claim(BaseModel):
    """The newest event that claimed a field: its `occurred_at` and the value it wrote."""

    at: datetime
    value: Any

    @field_serializer("at")
    def _isoformat(self, at: datetime) -> str:
        return at.isoformat()


class Claims(RootModel[dict[str, Claim]]):
    """One target's key: per field, its newest claim."""


class Marker(RootModel[dict[str, Any]]):
    """A note kept under its own key (the archive job being created, or created)."""


class AppliedLedger:
    def __init__(self, bucket: KvBucket) -> None:
        self._claims = KvRecords(bucket, Claims, max_conflicts=_MAX_CAS_ROUNDS)
        self._markers = KvRecords(bucket, Marker)

    async def claim(self, key: str, at: datetime, changes: Mapping[str, Any]) -> dict[str, Any]:
        """Record `changes` as applied at `at`; return the ones no newer event claimed."""
        fresh, _ = await self.claim_noting_repeats(key, at, changes)
        return fresh

    async def claim_noting_repeats(
        self, key: str, at: datetime, changes: Mapping[str, Any]
    ) -> tuple[dict[str, Any], frozenset[str]]:
        """`claim`, and which of the fields returned were claimed before by this very change
        (same time, same value: the event redelivered, its write maybe made already)."""

        def decide(
            stored: Claims | None,
        ) -> tuple[Claims | None, tuple[dict[str, Any], frozenset[str]]]:
            claims = stored.root if stored else {}
            fresh = {
                field: value
                for field, value in changes.items()
                if field not in claims or claims[field].at <= at
            }
            repeated = frozenset(
                f for f, v in fresh.items() if f in claims and claims[f] == Claim(at=at, value=v)
            )
            if not fresh:
                return None, ({}, repeated)
            updated = {**claims, **{f: Claim(at=at, value=v) for f, v in fresh.items()}}
            if updated == claims:
                return None, (fresh, repeated)
            return Claims(updated), (fresh, repeated)

        return await self._claims.update(key, decide)

    async def claimed_after(self, key: str, at: datetime, fields: list[str]) -> dict[str, Any]:
        """The values of `fields` that a newer event claimed since (to write them again)."""
        stored = await self._claims.get(key)
        claims = stored.root if stored else {}
        return {f: claims[f].value for f in fields if f in claims and claims[f].at > at}

    async def recall(self, key: str) -> dict[str, Any] | None:
        marker = await self._markers.get(key)
        return (marker.root or None) if marker else None

    async def begin(self, key: str, value: dict[str, Any]) -> bool:
        """Keep a new marker (compare-and-set: create); False if one exists (another
        instance, or an earlier attempt, began first)."""
        return await self._markers.create(key, Marker(value))

    async def remember(self, key: str, value: dict[str, Any]) -> None:
        """Replace a marker; only the instance whose `begin` kept it writes it."""
        await self._markers.put(key, Marker(value))

    async def forget(self, key: str) -> None:
        await self._markers.delete(key)
