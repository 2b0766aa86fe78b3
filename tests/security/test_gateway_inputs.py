"""Attacks on the gateway's HTTP inputs, sent as an attacker would, each shown to fail.

The gateway runs as its own process (`archiver run gateway`) against the real
nats-server, moto S3 and a SciCat stand-in whose archive jobs call the gateway
through SciCat's url action, as in production. The attacker holds at most what
a leaked credential gives: an upload token of their own, or the job action's
Basic credential.
"""

import select
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from nats.aio.client import Client as NatsClient

from contracts import kv
from contracts.dataset_records import CleanedDataset
from contracts.objectkeys import archive_id
from devstack.processes import ManagedProcess, free_port, tool_path
from runtime.kvstore import KvRecords, open_bucket
from tests.conftest import ScicatStandin, provision_with_cli, service_env

ROOT = "/archiver/api/v1"
MiB = 1024**2
JOB_AUTH = httpx.BasicAuth("jobs", "jobs-password")

JOB_CONFIG = """\
configVersion: security-tests
jobs:
  - jobType: archive
    create:
      auth: "#datasetOwner"
      actions:
        - actionType: url
          url: "{jobs_url}"
          method: POST
          headers:
            Content-Type: application/json
            Authorization: 'Basic {{{{{{ base64enc "jobs:jobs-password" }}}}}}'
          body: "{{{{{{ jsonify job }}}}}}"
    update:
      auth: "#jobAdmin"
  - jobType: public
    create:
      auth: "#datasetPublic"
    update:
      auth: "#jobAdmin"
"""
"""Archive jobs are handed to the gateway inside SciCat's create request; public ones are not."""


@dataclass(frozen=True)
class Edge:
    """The running gateway and the SciCat it reads."""

    url: str
    port: int
    process: ManagedProcess
    scicat: ScicatStandin

    def upload_client(self, username: str = "ingestor") -> httpx.Client:
        token = httpx.post(
            f"{self.url}/token",
            headers={"Authorization": f"Bearer {self.scicat.login(username)}"},
        )
        assert token.status_code == 201, token.text
        bearer = {"Authorization": f"Bearer {token.json()['access_token']}"}
        return httpx.Client(base_url=self.url, headers=bearer, timeout=30)

    def rss_bytes(self) -> int:
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        kib = next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:"))
        return int(kib) * 1024


@pytest.fixture(scope="module")
def edge(
    nats_server_process, s3_server, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Edge]:
    base = tmp_path_factory.mktemp("gateway-inputs")
    port = free_port()
    url = f"http://127.0.0.1:{port}{ROOT}"
    scicat = ScicatStandin(
        tmp_path_factory.mktemp("scicat"),
        job_config=JOB_CONFIG.format(jobs_url=f"{url}/archiver/jobs"),
    )
    scicat.start()
    provision_with_cli(nats_server_process.url)
    process = ManagedProcess(
        "gateway",
        [tool_path("archiver"), "run", "gateway"],
        base / "gateway.log",
        env=service_env(
            nats_server_process.url,
            s3_server,
            user="gateway",
            GATEWAY_PORT=str(port),
            SCICAT_URL=scicat.url,
            SCICAT_PASSWORD="aman",
            GATEWAY_INGESTOR_GROUPS='["ingestor"]',
        ),
    )
    process.start()
    process.wait_ready(lambda: httpx.get(f"{url}/health/readyz").is_success, 30)
    yield Edge(url, port, process, scicat)
    process.stop()
    scicat.stop()


def scicat_job(edge: Edge, job_type: str, *pids: str, username: str = "user1") -> httpx.Response:
    """A user creates a job in SciCat (archive jobs reach the gateway inside this request)."""
    body = {
        "type": job_type,
        "ownerGroup": "group1",
        "jobParams": {"datasetList": [{"pid": pid, "files": []} for pid in pids]},
    }
    with edge.scicat.client(username) as http:
        return http.post("/v4/jobs", json=body)


def job_post(job_id: str, *pids: str, job_type: str = "archive") -> dict:
    return {
        "id": job_id,
        "type": job_type,
        "statusCode": "jobSubmitted",
        "ownerGroup": "group1",
        "jobParams": {"datasetList": [{"pid": pid, "files": []} for pid in pids]},
    }


@dataclass(frozen=True)
class RawAnswer:
    status: int
    body: bytes
    body_bytes_sent: int


def post_huge_body(
    port: int,
    path: str,
    total: int,
    *,
    chunked: bool,
    headers: dict[str, str] | None = None,
    until_answered: bool = True,
) -> RawAnswer:
    """POST `total` bytes of body over a raw socket, as fast as the server takes them,
    until it stops reading (or answers, with `until_answered`); its answer and how much
    body went out."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {total}"
    extra = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
    head = f"POST {path} HTTP/1.1\r\nHost: gateway\r\n{extra}{framing}\r\n\r\n"
    sock.sendall(head.encode())
    chunk = b"x" * MiB
    framed = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n" if chunked else chunk
    sent = 0
    sock.settimeout(2)
    while sent < total and not (until_answered and select.select([sock], [], [], 0.01)[0]):
        try:
            sock.sendall(framed)
        except (TimeoutError, BrokenPipeError, ConnectionResetError):
            break  # the server stopped reading
        sent += len(chunk)
    sock.settimeout(10)
    answer = b""
    while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
        data = sock.recv(65536)
        if not data:
            break
        answer += data
    sock.close()
    head_part, _, body = answer.partition(b"\r\n\r\n")
    return RawAnswer(int(head_part.split()[1]), body, sent)


def test_an_unauthenticated_300_mb_body_does_not_grow_the_gateway(edge: Edge) -> None:
    """Before: read and parsed before authentication, 96 -> 720 MB. Now 401 before the body
    is read; the server drops the rest as it arrives (all 300 MB are sent here)."""
    before = edge.rss_bytes()

    answer = post_huge_body(
        edge.port,
        f"{ROOT}/s3/requestDatasetUpload",
        300 * MiB,
        chunked=False,
        headers={"Content-Type": "application/json"},
        until_answered=False,
    )

    assert answer.status == 401
    assert b"upload access token" in answer.body
    assert edge.rss_bytes() - before < 20 * MiB


def test_a_chunked_300_mb_body_from_a_token_holder_is_cut_at_the_limit(edge: Edge) -> None:
    """Authenticated callers get 413 at the route's limit, whatever the framing."""
    with edge.upload_client() as api:
        bearer = api.headers["Authorization"]
    before = edge.rss_bytes()

    answer = post_huge_body(
        edge.port,
        f"{ROOT}/s3/requestDatasetUpload",
        300 * MiB,
        chunked=True,
        headers={"Authorization": bearer, "Content-Type": "application/json"},
    )

    assert answer.status == 413
    assert b"larger than this route's limit of 65,536 bytes" in answer.body
    assert edge.rss_bytes() - before < 20 * MiB


def test_a_made_up_job_id_archives_nothing(edge: Edge) -> None:
    """The job credential alone no longer archives any dataset under an invented job."""
    victim = edge.scicat.create_dataset("group2")
    job_id = str(uuid.uuid4())

    posted = httpx.post(f"{edge.url}/archiver/jobs", json=job_post(job_id, victim), auth=JOB_AUTH)
    record = httpx.get(f"{edge.url}/archiver/jobs/{job_id}", auth=JOB_AUTH)

    assert posted.status_code == 404
    assert posted.json()["detail"] == (
        f"SciCat knows no job {job_id}; the archiver runs only jobs SciCat saved"
    )
    assert record.status_code == 404


def test_a_real_job_cannot_carry_another_dataset_list_or_type(edge: Edge) -> None:
    """SciCat's job is what runs: a re-POST with the victim's dataset slipped in, or a
    public job of SciCat's re-POSTed as an archive job, is 409."""
    own, victim = edge.scicat.create_dataset("group1"), edge.scicat.create_dataset("group2")
    created = scicat_job(edge, "archive", own)
    assert created.status_code == 201, created.text  # the url action reached the gateway
    job = created.json()
    recorded = httpx.get(f"{edge.url}/archiver/jobs/{job['id']}", auth=JOB_AUTH)
    with edge.scicat.client("admin") as http:  # DatasetUpdateAny: ADMIN_GROUPS only
        published = http.patch(f"/v3/Datasets/{quote(own, safe='')}", json={"isPublished": True})
        assert published.is_success, published.text
    public = scicat_job(edge, "public", own)
    assert public.status_code == 201, public.text

    swapped = job_post(job["id"], own, victim)
    relisted = httpx.post(f"{edge.url}/archiver/jobs", json=swapped, auth=JOB_AUTH)
    retyped = httpx.post(
        f"{edge.url}/archiver/jobs", json={**public.json(), "type": "archive"}, auth=JOB_AUTH
    )

    assert [d["pid"] for d in recorded.json()["datasets"]] == [own]
    assert relisted.status_code == 409
    assert "already submitted with another dataset list" in relisted.json()["detail"]
    assert retyped.status_code == 409
    assert "is a 'public' job in SciCat, not 'archive'" in retyped.json()["detail"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (job_post("a b", "p/1"), "may hold only letters, digits"),
        (job_post("x" * 200, "p/1"), "is not 1 to 128 characters long"),
        (job_post("../../x", "p/1"), "may hold only letters, digits"),
        (
            {
                "id": "j-1",
                "type": "archive",
                "jobParams": {"datasetList": [{"pid": "p/1", "files": 5}]},
            },
            "files is not a list of file paths",
        ),
        (job_post("j-2", "20.500.11935/a/raw_files/x"), "a folder of the layout"),
    ],
    ids=["space", "200-chars", "climbing", "files-5", "nesting-pid"],
)
def test_malformed_jobs_are_422_with_a_sentence(edge: Edge, body: dict, message: str) -> None:
    reply = httpx.post(f"{edge.url}/archiver/jobs", json=body, auth=JOB_AUTH)

    assert reply.status_code == 422, reply.text
    assert message in reply.json()["detail"][0]["msg"]


def test_a_job_with_100000_datasets_is_refused_before_the_bus(edge: Edge) -> None:
    """Before: the event exceeded the bus payload and the gateway answered 500."""
    pids = [f"20.500.11935/{uuid.UUID(int=n)}" for n in range(100_000)]

    reply = httpx.post(
        f"{edge.url}/archiver/jobs", json=job_post("j-3", *pids), auth=JOB_AUTH, timeout=60
    )

    assert reply.status_code in (413, 422), reply.text
    assert "limit" in reply.text or "at most" in reply.text


@pytest.mark.parametrize("value", ["NaN", "Infinity"])
def test_a_non_finite_dataset_size_is_422(edge: Edge, value: str) -> None:
    pid = edge.scicat.create_dataset("group1")
    with edge.upload_client() as api:
        reply = api.post(
            "/s3/requestDatasetUpload",
            content=f'{{"dataset_id": "{pid}", "dataset_size_gib": {value}}}',
            headers={"Content-Type": "application/json"},
        )

    assert reply.status_code == 422, reply.text
    assert reply.json()["detail"][0]["msg"] == "Input should be a finite number"


def test_a_pid_nesting_in_another_datasets_folder_is_422(edge: Edge) -> None:
    """`<victim>/raw_files/x` would upload into the victim's landing folder."""
    victim = edge.scicat.create_dataset("group1")
    with edge.upload_client() as api:
        reply = api.post(
            "/s3/requestDatasetUpload",
            json={"dataset_id": f"{victim}/raw_files/x", "dataset_size_gib": 0},
        )

    assert reply.status_code == 422
    assert "'raw_files', a folder of the layout" in reply.json()["detail"][0]["msg"]


def finalize_body(pid: str) -> dict:
    return {
        "dataset_id": pid,
        "create_archiving_job": True,
        "owner_group": "group1",
        "owner_user": "ingestor",
        "contact_email": "ingestor@example.org",
    }


async def test_uploads_and_finalize_of_an_archived_dataset_are_409(
    edge: Edge, nats_client: NatsClient
) -> None:
    """Before: accepted (201), then silently never archived. Now refused, saying why:
    from the datablocker's record of the archived dataset, or SciCat's lifecycle."""
    cleaned, on_tape = edge.scicat.create_dataset("group1"), edge.scicat.create_dataset("group1")
    records = KvRecords(
        await open_bucket(nats_client.jetstream(), kv.CLEANED_DATASETS), CleanedDataset
    )
    await records.put(
        kv.id_key(cleaned),
        CleanedDataset(
            pid=cleaned,
            job_id="job-1",
            archived_at=datetime(2025, 6, 1, tzinfo=UTC),
            archive_ids=(archive_id(cleaned, 0),),
        ),
    )
    with edge.scicat.client("archiveManager") as http:
        http.patch(
            f"/v3/Datasets/{quote(on_tape, safe='')}/datasetlifecycle",
            json={"archiveStatusMessage": "datasetOnArchiveDisk", "archivable": False},
        )

    with edge.upload_client() as api:
        replies = [
            api.post(route, json=body)
            for pid in (cleaned, on_tape)
            for route, body in [
                ("/s3/requestDatasetUpload", {"dataset_id": pid, "dataset_size_gib": 0}),
                ("/s3/presignedUrls", {"dataset_id": pid, "object_name": "x", "parts": 1}),
                ("/s3/finalizeDatasetUpload", finalize_body(pid)),
            ]
        ]

    assert [r.status_code for r in replies] == [409] * 6
    assert "was archived (job job-1)" in replies[0].json()["detail"]
    assert "archiveStatusMessage is datasetOnArchiveDisk" in replies[3].json()["detail"]
