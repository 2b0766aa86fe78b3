"""POST /archiver/jobs: SciCat's url action hands jobs over; each job id starts one chain."""

import contextlib
import uuid
from urllib.parse import quote

import httpx
import pytest
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from contracts import kv as kv_names
from contracts.events import JobRequested
from tests.gateway.conftest import ROOT, Gateway

JOBS = f"{ROOT}/archiver/jobs"
AUTH = httpx.BasicAuth("jobs", "jobs-password")


@pytest.fixture(autouse=True)
async def _no_job_records(clean_js: JetStreamContext) -> None:
    with contextlib.suppress(NotFoundError):
        await clean_js.delete_key_value(kv_names.JOBS)


def v4_job(job_id: str, *pids: str, job_type: str = "archive") -> dict:
    return {
        "id": job_id,
        "type": job_type,
        "statusCode": "jobSubmitted",
        "ownerGroup": "group1",
        "jobParams": {"datasetList": [{"pid": pid, "files": []} for pid in pids]},
    }


async def requested(js: JetStreamContext) -> list[tuple[str, JobRequested]]:
    info = await js.stream_info("ARCHIVER")
    found = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        raw = await js.get_msg("ARCHIVER", seq)
        if raw.subject.startswith("job.requested."):
            found.append((raw.subject, JobRequested.model_validate_json(raw.data)))
    return found


async def test_a_v4_job_is_recorded_and_requested_once_even_when_posted_twice(
    gateway: Gateway, clean_js: JetStreamContext
) -> None:
    """The second POST of the same job gets the same answer and starts nothing new."""
    job_id = str(uuid.uuid4())
    body = v4_job(job_id, "20.500.11935/a", "20.500.11935/b")

    first = await gateway.http.post(JOBS, json=body, auth=AUTH)
    second = await gateway.http.post(JOBS, json=body, auth=AUTH)

    assert first.status_code == 201, first.text
    assert first.json() == {"uuid": job_id, "name": f"archive-{job_id}"}
    assert second.status_code == 201
    assert second.json() == first.json()
    events = await requested(clean_js)
    assert [subject for subject, _ in events] == ["job.requested.archive"]
    assert [d.pid for d in events[0][1].datasets] == ["20.500.11935/a", "20.500.11935/b"]
    assert events[0][1].scicat_api == "v4"


async def test_the_job_state_is_readable_and_unknown_jobs_are_404(gateway: Gateway) -> None:
    job_id = str(uuid.uuid4())
    await gateway.http.post(JOBS, json=v4_job(job_id, "p/1"), auth=AUTH)

    state = await gateway.http.get(f"{JOBS}/{job_id}", auth=AUTH)
    unknown = await gateway.http.get(f"{JOBS}/{uuid.uuid4()}", auth=AUTH)

    assert state.status_code == 200
    assert state.json()["status"] == "jobSubmitted"
    assert state.json()["datasets"]["p/1"]["state"] == "pending"
    assert state.json()["bytes_done"] == 0
    assert unknown.status_code == 404
    assert "No job" in unknown.json()["detail"]


async def test_a_v3_job_is_recognised(gateway: Gateway, clean_js: JetStreamContext) -> None:
    """SciCat v3 sends `datasetList` at the top and `jobStatusMessage`."""
    job_id = "65f0c0ffee0123456789abcd"
    body = {
        "id": job_id,
        "type": "retrieve",
        "jobStatusMessage": "jobSubmitted",
        "datasetList": [{"pid": "p/3", "files": []}],
    }
    reply = await gateway.http.post(JOBS, json=body, auth=AUTH)

    assert reply.status_code == 201, reply.text
    (subject, event), *_ = await requested(clean_js)
    assert subject == "job.requested.retrieve"
    assert event.scicat_api == "v3"


async def test_the_minimal_reference_shape_reads_the_datasets_from_scicat(
    gateway: Gateway, clean_js: JetStreamContext
) -> None:
    """`{"id","type"}` only: the dataset list comes from SciCat's saved job."""
    pid = gateway.scicat.create_dataset()
    token = gateway.scicat.login("archiveManager")
    headers = {"Authorization": f"Bearer {token}"}
    # A "public" job has no url action in the stand-in's default config, so SciCat
    # saves it without calling us; then we are POSTed the reference's minimal shape.
    published = httpx.patch(
        f"{gateway.scicat.url}/v3/Datasets/{quote(pid, safe='')}",
        json={"isPublished": True},
        headers=headers,
    )
    assert published.status_code == 200, published.text
    created = httpx.post(
        f"{gateway.scicat.url}/v4/jobs",
        json={
            "type": "public",
            "ownerGroup": "group1",
            "jobParams": {"datasetList": [{"pid": pid, "files": []}]},
        },
        headers=headers,
    )
    assert created.status_code == 201, created.text
    job_id = created.json()["id"]

    reply = await gateway.http.post(JOBS, json={"id": job_id, "type": "archive"}, auth=AUTH)

    assert reply.status_code == 201, reply.text
    (_, event), *_ = await requested(clean_js)
    assert [d.pid for d in event.datasets] == [pid]


@pytest.mark.parametrize(
    ("auth", "headers"),
    [
        (None, {}),
        (httpx.BasicAuth("jobs", "wrong"), {}),
        (None, {"Authorization": "Bearer not-configured"}),
        (None, {"Authorization": "Basic !!!notbase64"}),
    ],
    ids=["none", "wrong-password", "bearer-not-configured", "garbage"],
)
async def test_job_posts_without_the_job_credentials_are_refused(
    gateway: Gateway, auth: httpx.BasicAuth | None, headers: dict[str, str]
) -> None:
    reply = await gateway.http.post(JOBS, json=v4_job("j-1", "p/1"), auth=auth, headers=headers)

    assert reply.status_code == 401
    assert reply.headers["WWW-Authenticate"] == "Basic"
    assert "job credentials" in reply.json()["detail"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"type": "archive"}, "no `id`"),
        ({"id": "j-2", "type": "publish"}, "not handled"),
        (v4_job("j-3"), "lists no datasets"),
        (
            {"id": "j-4", "type": "archive", "jobParams": {"datasetList": [{"pid": ""}]}},
            "malformed",
        ),
        (v4_job("j-5", "p/1", "p/1"), "more than once"),
    ],
)
async def test_malformed_jobs_get_a_422_that_says_why(
    gateway: Gateway, body: dict, message: str
) -> None:
    reply = await gateway.http.post(JOBS, json=body, auth=AUTH)

    assert reply.status_code == 422
    assert message in str(reply.json()["detail"])


async def test_the_same_job_id_with_another_type_is_a_conflict(gateway: Gateway) -> None:
    await gateway.http.post(JOBS, json=v4_job("j-6", "p/1"), auth=AUTH)
    reply = await gateway.http.post(JOBS, json=v4_job("j-6", "p/1", job_type="retrieve"), auth=AUTH)
    assert reply.status_code == 409
    assert "already submitted as an archive job" in reply.json()["detail"]
