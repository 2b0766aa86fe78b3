"""The archiver's nats-server settings (deploy/nats.conf) are in force."""

from nats.aio.client import Client as NatsClient


async def test_the_server_carries_events_of_large_datasets(nats_client: NatsClient) -> None:
    """8 MB payloads: a 50,000-file dataset's datablocks fit in one event."""
    assert nats_client.max_payload == 8 * 1024 * 1024
