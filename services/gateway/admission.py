"""Admission control: landing-zone space reserved per dataset upload, in NATS KV.

All reservations live in one KV entry (a ledger) changed only by compare-and-set
(`update(..., last=revision)`), so two gateways deciding at the same moment
cannot both spend the last free bytes: the loser re-reads and decides again.
A reservation is released by finalize or abort, and stops counting at its
expiry time, so a client that vanished does not hold space for ever.
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_serializer

from contracts import kv as kv_names
from runtime.kvstore import JetStream, KvBucket, KvRecords, open_bucket

T = TypeVar("T")

LEDGER_KEY = "ledger"

GiB = 1024**3


def reservation_bytes(dataset_size_gib: int) -> int:
    """The Ingestor sends `int(total bytes) / GiB`, rounded down: reserve the next GiB up."""
    return (dataset_size_gib + 1) * GiB


class Reservation(BaseModel):
    """Space held for one dataset's upload (kept in the ledger under its pid)."""

    model_config = ConfigDict(frozen=True, validate_by_name=True)

    size_bytes: int = Field(alias="bytes")
    expires_at: datetime
    holder: str = ""

    @field_serializer("expires_at")
    def _isoformat(self, expires_at: datetime) -> str:
        return expires_at.isoformat()


class ReservationLedger(BaseModel):
    """The one KV record (key `ledger`): every reservation, by pid."""

    reservations: dict[str, Reservation] = Field(default_factory=dict)


Ledger = dict[str, Reservation]


@dataclass(frozen=True)
class Decision:
    admitted: bool
    free_bytes: int
    """Free bytes after the decision (for a refusal: what is free now)."""


class Admission:
    """The ledger of landing-zone space reserved per dataset upload, in one KV key."""

    def __init__(self, capacity_bytes: int, ttl: timedelta, store: KvBucket) -> None:
        self._records = KvRecords(store, ReservationLedger)
        self._capacity = capacity_bytes
        self._ttl = ttl

    async def reserve(self, pid: str, size_bytes: int, holder: str, now: datetime) -> Decision:
        """Reserve (or re-reserve, replacing the old size) space for one dataset upload."""

        def change(ledger: Ledger) -> tuple[Ledger | None, Decision]:
            others = sum(r.size_bytes for p, r in ledger.items() if p != pid)
            free = self._capacity - others
            if size_bytes > free:
                return None, Decision(admitted=False, free_bytes=free - _held(ledger, pid))
            ledger[pid] = Reservation(
                size_bytes=size_bytes, expires_at=now + self._ttl, holder=holder
            )
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
        return _live(await self._records.get(LEDGER_KEY), now).get(pid)

    async def _apply(self, change: Callable[[Ledger], tuple[Ledger | None, T]], now: datetime) -> T:
        """Decide on the live reservations and store the outcome by compare-and-set.

        Another gateway that changed the ledger first makes `change` decide again.
        Expired reservations are dropped with the next write.
        """

        def decide(stored: ReservationLedger | None) -> tuple[ReservationLedger | None, T]:
            changed, result = change(_live(stored, now))
            if changed is None:
                return None, result
            return ReservationLedger(reservations=dict(sorted(changed.items()))), result

        return await self._records.update(LEDGER_KEY, decide)


def _live(stored: ReservationLedger | None, now: datetime) -> Ledger:
    """The reservations that still count at `now`."""
    if stored is None:
        return {}
    return {pid: r for pid, r in stored.reservations.items() if r.expires_at > now}


def _held(ledger: Ledger, pid: str) -> int:
    held = ledger.get(pid)
    return held.size_bytes if held else 0


async def open_reservations(js: JetStream) -> KvBucket:
    """The reservations bucket."""
    return await open_bucket(js, kv_names.UPLOAD_RESERVATIONS)
