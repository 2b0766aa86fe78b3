"""The dev stack's bus as its own users reach it, for tests that drive a running stack.

A stack has no all-powerful user: a test publishes each subject as the user that
emits it (as a buggy or compromised producer would), opens a KV bucket as a user
that may read it, and reads streams and consumers as the operator.
"""

from typing import Any

from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.api import PubAck
from nats.js.kv import KeyValue

from contracts import kv
from contracts.bus_permissions import MINIO, OPERATOR, publisher_of
from contracts.streams import SERVICES
from devstack.stack import DevStack
from runtime.nats_connection import connect


class StackJetStream:
    """A JetStream context whose calls go out as the user allowed to make them."""

    def __init__(self, clients: dict[str, NatsClient]) -> None:
        self._clients = clients

    @classmethod
    async def connect(cls, stack: DevStack) -> "StackJetStream":
        users = (*SERVICES, OPERATOR, MINIO)
        return cls(
            {user: await connect(stack.nats_settings(user), f"tests-{user}") for user in users}
        )

    def as_user(self, user: str) -> JetStreamContext:
        return self._clients[user].jetstream()

    async def publish(self, subject: str, payload: bytes = b"", **options: Any) -> PubAck:
        return await self.as_user(publisher_of(subject)).publish(subject, payload, **options)

    async def key_value(self, bucket: str) -> KeyValue:
        spec = next(b for b in kv.BUCKETS if b.name == bucket)
        return await self.as_user((*spec.writers, *spec.readers)[0]).key_value(bucket)

    def __getattr__(self, name: str) -> Any:
        """Everything else (stream and consumer info, stored messages) as the operator."""
        return getattr(self.as_user(OPERATOR), name)

    async def close(self) -> None:
        for client in self._clients.values():
            await client.close()
