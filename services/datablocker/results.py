"""Finished packing results in the `datablocks` KV bucket, one per dataset."""

from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig
from nats.js.errors import BucketNotFoundError, KeyNotFoundError
from nats.js.kv import KeyValue

from contracts import kv
from contracts.events import DatablocksCreated


class PackedResults:
    """Reads and writes `DatablocksCreated` per pid; creates the bucket on first use."""

    def __init__(self, js: JetStreamContext, *, replicas: int = 1) -> None:
        self._js = js
        self._replicas = replicas
        self._bucket: KeyValue | None = None

    async def _kv(self) -> KeyValue:
        if self._bucket is None:
            try:
                self._bucket = await self._js.key_value(kv.DATABLOCKS)
            except BucketNotFoundError:
                self._bucket = await self._js.create_key_value(
                    KeyValueConfig(
                        bucket=kv.DATABLOCKS,
                        description="datablocker: each packed dataset's DatablocksCreated event",
                        history=1,
                        replicas=self._replicas,
                    )
                )
        return self._bucket

    async def get(self, pid: str) -> DatablocksCreated | None:
        bucket = await self._kv()
        try:
            entry = await bucket.get(kv.id_key(pid))
        except KeyNotFoundError:
            return None
        if not entry.value:
            return None
        return DatablocksCreated.model_validate_json(entry.value)

    async def put(self, event: DatablocksCreated) -> None:
        bucket = await self._kv()
        await bucket.put(kv.id_key(event.pid), event.model_dump_json().encode())
