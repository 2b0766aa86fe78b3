"""Admission control: landing-zone space reserved per dataset upload, in NATS KV.

All reservations live in one KV entry (a ledger) changed only by compare-and-set
(`update(..., last=revision)`), so two gateways deciding at the same moment
cannot both spend the last free bytes: the loser re-reads and decides again.
A reservation is released by finalize or abort, and stops counting at its
expiry time, so a client that vanished does not hold space for ever.
"""

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeVar

from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from contracts import kv as kv_names
from runtime.kvstore import open_bucket

T = TypeVar("T")

LEDGER_KEY = "ledger"
_MAX_ATTEMPTS = 50

GiB = 1024**3


def reservation_bytes(dataset_size_gib: int) -> int:
    """The Ingestor sends `int(total bytes) / GiB`, rounded down: reserve the next GiB up."""
    return (dataset_size_gib + 1) * GiB


@dataclass(frozen=True)
class Reservation:
    pid: str
    size_bytes: int
    expires_at: datetime
    holder: str


Ledger = dict[str, Reservation]


@dataclass(frozen=True)
class Decision:
    admitted: bool
    free_bytes: int
    """Free bytes after the decision (for a refusal: what is free now)."""


class Admission:
    """The ledger of landing-zone space reserved per dataset upload, in one KV key."""

    def __init__(self, capacity_bytes: int, ttl: timedelta, store: KeyValue) -> None:
        self._store = store
        self._capacity = capacity_bytes
        self._ttl = ttl

    async def reserve(self, pid: str, size_bytes: int, holder: str, now: datetime) -> Decision:
        """Reserve (or re-reserve, replacing the old size) space for one dataset upload."""

        def change(ledger: Ledger) -> tuple[Ledger | None, Decision]:
            others = sum(r.size_bytes for p, r in ledger.items() if p != pid)
            free = self._capacity - others
            if size_bytes > free:
                return None, Decision(admitted=False, free_bytes=free - _held(ledger, pid))
            ledger[pid] = Reservation(pid, size_bytes, now + self._ttl, holder)
            return ledger, Decision(admitted=True, free_bytes=free - size_bytes)

        return await self._apply(change, now)

    async def release(self, pid: str, now: datetime) -> bool:
        """Drop a dataset's reservation; True if there was one."""

        def change(ledger: Ledger) -> tuple[Ledger | None, bool]:
            if ledger.pop(pid, None) is None:
                return None, False
            return ledger, True

        return await self._apply(change, now)

    async def reservation(self, pid: str, now: datetime) -> Reservation | None:
        ledger, _ = await self._read(now)
        return ledger.get(pid)

    async def _apply(self, change: Callable[[Ledger], tuple[Ledger | None, T]], now: datetime) -> T:
        for _ in range(_MAX_ATTEMPTS):
            ledger, revision = await self._read(now)
            changed, result = change(ledger)
            if changed is None:
                return result
            value = _encode(changed)
            try:
                if revision is None:
                    await self._store.create(LEDGER_KEY, value)
                else:
                    await self._store.update(LEDGER_KEY, value, last=revision)
            except KeyWrongLastSequenceError:
                continue  # another gateway changed the ledger first: decide again
            return result
        msg = f"upload reservations: {_MAX_ATTEMPTS} conflicting updates in a row"
        raise RuntimeError(msg)

    async def _read(self, now: datetime) -> tuple[dict[str, Reservation], int | None]:
        try:
            entry = await self._store.get(LEDGER_KEY)
        except KeyNotFoundError:
            return {}, None
        raw = json.loads(entry.value or b"{}")
        ledger = {
            pid: Reservation(
                pid=pid,
                size_bytes=int(item["bytes"]),
                expires_at=datetime.fromisoformat(item["expires_at"]),
                holder=str(item.get("holder", "")),
            )
            for pid, item in raw.get("reservations", {}).items()
        }
        live = {pid: r for pid, r in ledger.items() if r.expires_at > now}
        return live, entry.revision


def _held(ledger: dict[str, Reservation], pid: str) -> int:
    held = ledger.get(pid)
    return held.size_bytes if held else 0


def _encode(ledger: dict[str, Reservation]) -> bytes:
    return json.dumps(
        {
            "reservations": {
                pid: {
                    "bytes": r.size_bytes,
                    "expires_at": r.expires_at.isoformat(),
                    "holder": r.holder,
                }
                for pid, r in sorted(ledger.items())
            }
        }
    ).encode()


async def open_reservations(js: JetStreamContext, replicas: int = 1) -> KeyValue:
    """The reservations bucket, created on first use."""
    return await open_bucket(
        js,
        kv_names.UPLOAD_RESERVATIONS,
        replicas,
        description="gateway: landing-zone space reserved per dataset upload",
    )
