"""The round trip through public interfaces, on the embedded stack, with each LTS backend.

Ingest (with the archive job) -> `datasetOnArchiveDisk` -> a SciCat retrieve job
-> the job's URLs downloaded with plain httpx -> unpacked -> every file equal to
the original; the job's download script run with bash; `archiver retrieve`.
One stack per backend for the whole module.
"""

import base64
import hashlib
import io
import os
import subprocess
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import httpx
import pytest
from minio import Minio

from archiver.ingesting import IngestRequest, endpoints_from_stack, ingest
from devstack.processes import tool_path
from devstack.stack import SCICAT_USERS, DevStack, StackPorts
from tests.polling import eventually_sync

MiB = 1024 * 1024
WAIT_S = 60.0


@pytest.fixture(scope="module", params=["posix", "s3"])
def roundtrip_stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DevStack]:
    dev = DevStack(
        tmp_path_factory.mktemp(f"roundtrip-{request.param}"),
        StackPorts.choose("auto"),
        lts_backend=request.param,
    )
    try:
        dev.start()
        yield dev
    finally:
        dev.stop()


class _Quiet:
    def hashing_started(self, total_bytes: int) -> None: ...
    def hashed(self, nbytes: int) -> None: ...
    def upload_started(self, total_bytes: int) -> None: ...
    def file_started(self, name: str, size: int) -> None: ...
    def file_finished(self, name: str) -> None: ...
    def advanced(self, name: str, nbytes: int) -> None: ...
    def note(self, message: str) -> None: ...


def _dataset(root: Path) -> dict[str, bytes]:
    """Small, mixed, new random bytes; one file above the 5 MiB part size (multipart)."""
    files = {
        "empty.dat": b"",
        "readme.txt": b"run 7\n",
        "nested/deeper/data.bin": os.urandom(300_000),
        "nested/ünïcödé ✓.txt": "grüße\n".encode(),
        "movie.mrc": os.urandom(11 * MiB + 4321),
    }
    for relative, content in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    return files


class Catalog:
    """SciCat as the ingestor user sees it."""

    def __init__(self, stack: DevStack) -> None:
        user, password = SCICAT_USERS["ingestor"]
        self.url = stack.scicat_url
        login = httpx.post(
            f"{self.url}/v3/auth/login", json={"username": user, "password": password}
        )
        self.headers = {"Authorization": f"Bearer {login.json()['access_token']}"}

    def get(self, path: str) -> Any:
        reply = httpx.get(f"{self.url}{path}", headers=self.headers)
        assert reply.status_code == 200, reply.text
        return reply.json()

    def lifecycle(self, pid: str) -> dict[str, Any]:
        return self.get(f"/v3/Datasets/{quote(pid, safe='')}")["datasetlifecycle"]

    def create_retrieve_job(self, pid: str) -> str:
        body = {
            "type": "retrieve",
            "ownerGroup": "group1",
            "jobParams": {"datasetList": [{"pid": pid, "files": []}]},
        }
        reply = httpx.post(f"{self.url}/v4/jobs", json=body, headers=self.headers, timeout=30)
        assert reply.status_code == 201, reply.text
        return reply.json()["id"]

    def finished_job(self, job_id: str) -> dict[str, Any]:
        return eventually_sync(
            lambda: self.get(f"/v4/jobs/{job_id}"),
            f"job {job_id} finished",
            done=lambda job: job["statusCode"].startswith("finished"),
            timeout_s=WAIT_S,
            interval_s=0.2,
        )


def _archived_dataset(stack: DevStack, folder: Path) -> tuple[str, dict[str, bytes]]:
    """Ingest `folder` with the archive job and wait for `datasetOnArchiveDisk`."""
    files = _dataset(folder)
    request = IngestRequest(folder=folder, owner_group="group1", archive=True, chunk_size=5 * MiB)
    endpoints = endpoints_from_stack(stack.state_dir / "stack.json")
    with httpx.Client(timeout=30) as http:
        pid = ingest(request, endpoints, http=http, progress=_Quiet(), cancel=threading.Event())
    catalog = Catalog(stack)
    eventually_sync(
        lambda: catalog.lifecycle(pid).get("archiveStatusMessage"),
        f"{pid} archived (datasetOnArchiveDisk)",
        done=lambda status: status == "datasetOnArchiveDisk",
        timeout_s=WAIT_S,
        interval_s=0.2,
    )
    return pid, files


def _unpack_all(tars: list[bytes], target: Path) -> None:
    for content in tars:
        with tarfile.open(fileobj=io.BytesIO(content)) as tar:
            tar.extractall(target, filter="data")


def _tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in root.rglob("*")
        if p.is_file() and ".archiver-downloads" not in p.parts
    }


def _retrieval_key(url: str) -> str:
    return unquote(urlsplit(url).path).removeprefix("/retrieval/")


def _s3(stack: DevStack) -> Minio:
    return Minio(
        stack.s3_endpoint.removeprefix("http://"),
        access_key=stack.secrets.s3_access_key,
        secret_key=stack.secrets.s3_secret_key,
        secure=False,
    )


def _run_script(script: str, target: Path) -> subprocess.CompletedProcess[str]:
    path = target.parent / f"{target.name}.sh"
    path.write_text(script)
    return subprocess.run(
        ["bash", str(path), str(target)], capture_output=True, text=True, timeout=120
    )


def test_retrieve_job_urls_and_script_give_back_every_file(
    roundtrip_stack: DevStack, tmp_path: Path
) -> None:
    """Job URLs (plain httpx + tar) and the bash script reproduce the dataset; corruption fails."""
    stack = roundtrip_stack
    pid, files = _archived_dataset(stack, tmp_path / "original")
    catalog = Catalog(stack)

    job = catalog.finished_job(catalog.create_retrieve_job(pid))

    assert job["statusCode"] == "finishedSuccessful", job["statusMessage"]
    result = job["jobResultObject"]["result"]
    assert {r["datasetId"] for r in result} == {pid}
    tars = [httpx.get(r["url"], timeout=30).content for r in result]
    assert [len(t) for t in tars] == [r["size"] for r in result]
    _unpack_all(tars, tmp_path / "via-urls")
    assert _tree(tmp_path / "via-urls") == files
    lifecycle = catalog.lifecycle(pid)
    assert lifecycle["retrieveStatusMessage"] == "datasetRetrieved"
    assert lifecycle["retrieveIntegrityCheck"] is True

    script = base64.b64decode(job["jobResultObject"]["downloadScript"]).decode()
    good = _run_script(script, tmp_path / "via-script")
    assert good.returncode == 0, good.stdout + good.stderr
    assert _tree(tmp_path / "via-script") == files

    # Corrupt the retrieved copy after the job finished (same size, one byte changed).
    key = _retrieval_key(result[0]["url"])
    spoiled = bytearray(tars[0])
    spoiled[len(spoiled) // 2] ^= 0xFF
    _s3(stack).put_object("retrieval", key, io.BytesIO(bytes(spoiled)), len(spoiled))
    bad = _run_script(script, tmp_path / "via-script-corrupted")
    assert bad.returncode != 0
    assert "FAILED" in bad.stderr


def test_two_retrieve_jobs_share_one_copy_and_both_work(
    roundtrip_stack: DevStack, tmp_path: Path
) -> None:
    """Two jobs for one dataset: one copy in the retrieval bucket, working URLs for both."""
    stack = roundtrip_stack
    pid, files = _archived_dataset(stack, tmp_path / "original")
    catalog = Catalog(stack)

    first, second = catalog.create_retrieve_job(pid), catalog.create_retrieve_job(pid)
    jobs = [catalog.finished_job(first), catalog.finished_job(second)]

    assert [j["statusCode"] for j in jobs] == ["finishedSuccessful", "finishedSuccessful"]
    prefix = f"openem-network/datasets/{pid}/retrieved/"
    copies = [o.object_name for o in _s3(stack).list_objects("retrieval", prefix, recursive=True)]
    blocks = catalog.get(f"/v3/Datasets/{quote(pid, safe='')}/datablocks")
    assert len(copies) == len(blocks) == 1
    auth = (stack.secrets.job_user, stack.secrets.job_password)
    copied = [
        block["copied"]
        for job_id in (first, second)
        for dataset in httpx.get(f"{stack.gateway_url}/archiver/jobs/{job_id}", auth=auth).json()[
            "datasets"
        ]
        if dataset["pid"] == pid
        for block in dataset["datablocks"]
    ]
    assert sorted(copied) == [False, True]
    for n, job in enumerate(jobs):
        tars = [httpx.get(r["url"], timeout=30).content for r in job["jobResultObject"]["result"]]
        _unpack_all(tars, tmp_path / f"job-{n}")
        assert _tree(tmp_path / f"job-{n}") == files


def test_cli_retrieve_unpacks_and_verifies_every_file(
    roundtrip_stack: DevStack, tmp_path: Path
) -> None:
    """`archiver retrieve PID --to DIR` exits 0 with the dataset byte-identical in DIR."""
    stack = roundtrip_stack
    pid, files = _archived_dataset(stack, tmp_path / "original")
    target = tmp_path / "retrieved"

    done = subprocess.run(
        [
            tool_path("archiver"), "retrieve", pid,
            "--to", str(target),
            "--stack", str(stack.state_dir / "stack.json"),
            "--poll", "0.2s", "--timeout", "60s",
        ],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip

    assert done.returncode == 0, done.stdout + done.stderr
    assert f"all {len(files)} file(s) intact" in done.stdout
    assert _tree(target) == files
    assert not (target / ".archiver-downloads").exists()
    digest = hashlib.sha256(files["movie.mrc"]).hexdigest()
    assert hashlib.sha256((target / "movie.mrc").read_bytes()).hexdigest() == digest
