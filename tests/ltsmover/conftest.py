"""The `world` each ltsmover test runs in: provisioned streams, an S3 client, an LTS root."""

from pathlib import Path

import pytest
from minio import Minio
from nats.js import JetStreamContext

from runtime.provisioning import provision


@pytest.fixture
async def world(clean_js: JetStreamContext, s3_server, tmp_path: Path):
    await provision(clean_js)
    s3 = Minio(
        s3_server.endpoint.removeprefix("http://"),
        access_key=s3_server.access_key,
        secret_key=s3_server.secret_key,
        secure=False,
    )
    root = tmp_path / "lts"
    root.mkdir()
    return clean_js, s3, root
