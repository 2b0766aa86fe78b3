"""Removing expired retrieval copies (moto and some S3 servers never enforce lifecycle rules).

Schedule: the ltsmover sweeps once at start-up and then every
`LTSMOVER_SWEEP_INTERVAL_S` (default hourly). A verified copy is removed once its
`expires_at` has passed (its URLs have expired too); an object in the retrieval
bucket with no record at all is removed once it is older than the URL expiry
(a leftover of a crash). A copy being made or checked is never touched.
"""

import asyncio
from collections.abc import Callable
from datetime import datetime, timedelta

import structlog

from services.ltsmover.retrieval_bucket import RetrievalBucket
from services.ltsmover.retrieval_copies import RetrievalCopies

log = structlog.get_logger(__name__)


async def sweep_expired(
    copies: RetrievalCopies, bucket: RetrievalBucket, *, now: datetime, orphan_age: timedelta
) -> list[str]:
    """Remove expired copies and old orphaned objects; the keys removed."""
    removed: list[str] = []
    known: set[str] = set()
    for copy, _ in await copies.all():
        known.add(copy.key)
        if copy.state != "verified" or copy.expires_at is None or copy.expires_at > now:
            continue
        expired = await copies.remove(
            copy.archive_id,
            lambda c: c.state == "verified" and c.expires_at is not None and c.expires_at <= now,
        )
        if expired is not None:
            await asyncio.to_thread(bucket.delete, expired.key)
            removed.append(expired.key)
    for stored in await asyncio.to_thread(lambda: list(bucket.objects())):
        if stored.key in known or stored.last_modified is None:
            continue
        if now - stored.last_modified > orphan_age:
            await asyncio.to_thread(bucket.delete, stored.key)
            removed.append(stored.key)
    if removed:
        log.info("retrieval.swept", removed=len(removed))
    return removed


async def sweep_forever(
    copies: RetrievalCopies,
    bucket: RetrievalBucket,
    *,
    interval_s: float,
    orphan_age: timedelta,
    clock: Callable[[], datetime],
) -> None:
    """Sweep now and then every `interval_s`; a failed sweep is logged and tried next time."""
    while True:
        try:
            await sweep_expired(copies, bucket, now=clock(), orphan_age=orphan_age)
        except Exception as exc:  # the loop must outlive a dependency outage
            log.warning("retrieval.sweep_failed", error=f"{type(exc).__name__}: {exc}")
        await asyncio.sleep(interval_s)
