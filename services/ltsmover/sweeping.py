"""Removing expired retrieval copies (moto and some S3 servers never enforce lifecycle rules).

Schedule: one sweep per `LTSMOVER_SWEEP_INTERVAL_S` (default hourly), at start-up
first, however many ltsmover instances run: each round is claimed in KV
(`runtime.periodic`) and run by the instance that claimed it. A verified copy is removed once its
`expires_at` has passed (its URLs have expired too); an object in the retrieval
bucket with no record at all is removed once it is older than the URL expiry
(a leftover of a crash). A copy being made or checked is never touched.
"""

import asyncio
from datetime import datetime, timedelta

import structlog

from services.ltsmover.retrieval_bucket import RetrievalBucket
from services.ltsmover.retrieval_copies import RetrievalCopies

log = structlog.get_logger(__name__)


async def sweep_expired(
    copies: RetrievalCopies, bucket: RetrievalBucket, *, now: datetime, orphan_age: timedelta
) -> list[str]:
    """Remove expired copies and old orphaned objects; the keys removed.

    Safe beside another sweep: a copy's record is removed by compare-and-set
    before its object, so only the sweep that removed the record deletes it.
    """
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
