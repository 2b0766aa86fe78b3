"""Opening the archiver's JetStream key-value buckets, created on first use."""

from datetime import timedelta

from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import BucketNotFoundError
from nats.js.kv import KeyValue


async def open_bucket(
    js: JetStreamContext,
    bucket: str,
    replicas: int = 1,
    *,
    ttl: timedelta | None = None,
    history: int = 1,
    description: str | None = None,
) -> KeyValue:
    """The bucket, created (file storage, `replicas` copies) if it does not exist yet."""
    try:
        return await js.key_value(bucket)
    except BucketNotFoundError:
        return await js.create_key_value(
            KeyValueConfig(
                bucket=bucket,
                description=description,
                storage=StorageType.FILE,
                replicas=replicas,
                history=history,
                ttl=ttl.total_seconds() if ttl else None,
            )
        )
