"""Verifying retrieved copies in the retrieval bucket (moto S3)."""

import io
import uuid

from minio import Minio

from runtime.objectstore import BucketReader
from services.verifier.verifying import verify_retrieved
from tests.verifier.test_verifying import MEMBERS, build_tar


def _bucket(s3_server) -> BucketReader:
    client = Minio(
        s3_server.endpoint.removeprefix("http://"),
        access_key=s3_server.access_key,
        secret_key=s3_server.secret_key,
        secure=False,
    )
    return BucketReader(client, "retrieval", "retrieval")


async def test_a_good_retrieved_copy_verifies_and_a_changed_one_does_not(s3_server) -> None:
    """The retrieved object is read from the bucket and checked like an LTS copy."""
    bucket = _bucket(s3_server)
    raw, block = build_tar(MEMBERS)
    key = f"openem-network/datasets/p-{uuid.uuid4().hex[:6]}/retrieved/p-1_0.tar"
    bucket.client.put_object("retrieval", key, io.BytesIO(raw), len(raw))

    good = await verify_retrieved(bucket, key, block)
    changed = raw.replace(b"A" * 10, b"A" * 9 + b"Z", 1)
    bucket.client.put_object("retrieval", key, io.BytesIO(changed), len(changed))
    bad = await verify_retrieved(bucket, key, block)

    assert good.ok is True
    assert bad.ok is False
    assert "member checksum mismatch: raw/a.dat" in (bad.reason or "")


async def test_a_missing_retrieved_copy_fails(s3_server) -> None:
    """No object under the key is a failed verdict, not an error."""
    _, block = build_tar(MEMBERS)

    verdict = await verify_retrieved(_bucket(s3_server), "nothing/here.tar", block)

    assert verdict.ok is False
    assert (verdict.reason or "").startswith("no retrieved copy: nothing/here.tar")
