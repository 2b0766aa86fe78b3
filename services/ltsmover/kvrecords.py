"""Records in a KV bucket, one per id (a job id, an archive id), changed by compare-and-set."""

from collections.abc import Callable
from typing import Generic, TypeVar

from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue
from pydantic import BaseModel

from contracts.kv import id_key

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")

MAX_CONFLICTS = 50
"""Conflicting writes in a row before a change gives up (they resolve in one or two)."""


class KvRecords(Generic[M]):
    """`model` records in `kv`; `label` names one in messages ("job", "retrieval copy of")."""

    def __init__(self, kv: KeyValue, model: type[M], label: str) -> None:
        self.kv = kv
        self.model = model
        self.label = label

    async def read(self, identifier: str) -> tuple[M, int] | None:
        """The newest record and its revision; None if there is none."""
        try:
            entry = await self.kv.get(id_key(identifier))
        except KeyNotFoundError:
            return None
        if not entry.value or entry.revision is None:
            return None
        return self.model.model_validate_json(entry.value), entry.revision

    async def get(self, identifier: str) -> M | None:
        found = await self.read(identifier)
        return found[0] if found else None

    async def store(self, identifier: str, record: M, revision: int | None) -> bool:
        """Write `record` over `revision` (None: create it); False if someone wrote first."""
        data = record.model_dump_json().encode()
        try:
            if revision is None:
                await self.kv.create(id_key(identifier), data)
            else:
                await self.kv.update(id_key(identifier), data, last=revision)
        except KeyWrongLastSequenceError:
            return False
        return True

    async def change(self, identifier: str, mutate: Callable[[M], T]) -> tuple[M, T] | None:
        """Apply `mutate` to the newest record and store it, re-applying on a conflict.

        None if there is no record. `mutate` must decide from the record it is
        given (it may run more than once).
        """
        for _ in range(MAX_CONFLICTS):
            found = await self.read(identifier)
            if found is None:
                return None
            record, revision = found
            result = mutate(record)
            if await self.store(identifier, record, revision):
                return record, result
        raise self.conflicted(identifier)

    async def remove(self, identifier: str, when: Callable[[M], bool]) -> M | None:
        """Delete the record if `when(record)` holds for its newest revision; the removed record."""
        for _ in range(MAX_CONFLICTS):
            found = await self.read(identifier)
            if found is None or not when(found[0]):
                return None
            try:
                await self.kv.delete(id_key(identifier), last=found[1])
            except KeyWrongLastSequenceError:
                continue
            return found[0]
        raise self.conflicted(identifier)

    def conflicted(self, identifier: str) -> RuntimeError:
        msg = f"{self.label} {identifier}: {MAX_CONFLICTS} conflicting updates in a row"
        return RuntimeError(msg)
