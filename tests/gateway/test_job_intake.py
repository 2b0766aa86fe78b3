"""POST /archiver/jobs: SciCat's url action hands jobs over; the archiver acts on SciCat's job.

Each test creates its jobs in the SciCat stand-in as a user would (the stand-in
here has no url actions), then POSTs them as SciCat's url action does.
"""

import contextlib
import uuid

import httpx
import pytest
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from contracts import kv as kv_names
from contracts.events import JobRequested
from tests.gateway.conftest import ROOT, Gateway, create_job

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
    found: list[tuple[str, JobRequested]] = []
    if info.state.messages == 0:
        return found
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        raw = await js.get_msg("ARCHIVER", seq)
        if raw.subject.startswith("job.requested."):
            found.append((raw.subject, JobRequested.model_validate_json(raw.data)))
    return found


async def test_a_v4_job_is_recorded_and_requested_once_even_when_posted_twice(
    gateway: Gateway, clean_js: JetStreamContext
) -> None:
    """The second POST of the same job gets the same answer and starts nothing new."""
    first_pid, second_pid = gateway.scicat.create_dataset(), gateway.scicat.create_dataset()
    job = create_job(gateway.scicat, "archive", first_pid, second_pid)

    first = await gateway.http.post(JOBS, json=job, auth=AUTH)
    second = await gateway.http.post(JOBS, json=job, auth=AUTH)

    assert first.status_code == 201, first.text
    assert first.json() == {"uuid": job["id"], "name": f"archive-{job['id']}"}
    assert second.status_code == 201
    assert second.json() == first.json()
    events = await requested(clean_js)
    assert [subject for subject, _ in events] == ["job.requested.archive"]
    assert [d.pid for d in events[0][1].datasets] == [first_pid, second_pid]
    assert events[0][1].scicat_api == "v4"
    assert events[0][1].owner_group == "group1"


async def test_the_job_state_is_readable_and_unknown_jobs_are_404(gateway: Gateway) -> None:
    pid = gateway.scicat.create_dataset()
    job = create_job(gateway.scicat, "archive", pid)
    await gateway.http.post(JOBS, json=job, auth=AUTH)

    state = await gateway.http.get(f"{JOBS}/{job['id']}", auth=AUTH)
    unknown = await gateway.http.get(f"{JOBS}/{uuid.uuid4()}", auth=AUTH)

    assert state.status_code == 200
    assert state.json()["status"] == "jobSubmitted"
    assert state.json()["owner_group"] == "group1"
    assert [(d["pid"], d["phase"]) for d in state.json()["datasets"]] == [(pid, "pending")]
    assert state.json()["bytes_done"] == 0
    assert state.json()["percent"] == 0.0
    assert unknown.status_code == 404
    assert "No job" in unknown.json()["detail"]


async def test_a_v3_job_is_read_back_through_scicats_v3_api(
    gateway: Gateway, clean_js: JetStreamContext
) -> None:
    """SciCat v3 sends `datasetList` at the top and `jobStatusMessage`."""
    pid = gateway.scicat.create_dataset()
    job = create_job(gateway.scicat, "retrieve", pid, api="v3")
    assert "jobStatusMessage" in job

    reply = await gateway.http.post(JOBS, json=job, auth=AUTH)

    assert reply.status_code == 201, reply.text
    (subject, event), *_ = await requested(clean_js)
    assert subject == "job.requested.retrieve"
    assert event.scicat_api == "v3"
    assert [d.pid for d in event.datasets] == [pid]


async def test_the_minimal_reference_shape_reads_the_datasets_from_scicat(
    gateway: Gateway, clean_js: JetStreamContext
) -> None:
    """`{"id","type"}` only: the dataset list comes from SciCat's saved job."""
    pid = gateway.scicat.create_dataset()
    job = create_job(gateway.scicat, "archive", pid)

    reply = await gateway.http.post(JOBS, json={"id": job["id"], "type": "archive"}, auth=AUTH)

    assert reply.status_code == 201, reply.text
    (_, event), *_ = await requested(clean_js)
    assert [d.pid for d in event.datasets] == [pid]


async def test_a_job_scicat_does_not_know_is_404_and_starts_nothing(
    gateway: Gateway, clean_js: JetStreamContext
) -> None:
    """Holding the job credentials is not enough to archive any dataset under a made-up id."""
    pid = gateway.scicat.create_dataset()

    reply = await gateway.http.post(JOBS, json=v4_job(str(uuid.uuid4()), pid), auth=AUTH)

    assert reply.status_code == 404
    assert "SciCat knows no job" in reply.json()["detail"]
    assert await requested(clean_js) == []


async def test_a_dataset_list_other_than_scicats_is_409_and_starts_nothing(
    gateway: Gateway, clean_js: JetStreamContext
) -> None:
    """A real job id with someone else's dataset slipped into the list is refused."""
    own, foreign = gateway.scicat.create_dataset(), gateway.scicat.create_dataset("group2")
    job = create_job(gateway.scicat, "archive", own)
    job["jobParams"]["datasetList"].append({"pid": foreign, "files": []})

    reply = await gateway.http.post(JOBS, json=job, auth=AUTH)

    assert reply.status_code == 409
    assert "dataset list is not the one SciCat saved" in reply.json()["detail"]
    assert await requested(clean_js) == []


async def test_a_type_other_than_scicats_is_409(gateway: Gateway) -> None:
    """An archive job in SciCat cannot be run as a retrieve (nor the other way round)."""
    pid = gateway.scicat.create_dataset()
    job = create_job(gateway.scicat, "archive", pid)

    reply = await gateway.http.post(JOBS, json={**job, "type": "retrieve"}, auth=AUTH)

    assert reply.status_code == 409
    assert reply.json()["detail"] == (
        f"Job {job['id']} is a 'archive' job in SciCat, not 'retrieve';"
        " the archiver acts on the job as SciCat saved it"
    )


async def test_a_repeat_with_another_type_or_dataset_list_is_409(gateway: Gateway) -> None:
    pid = gateway.scicat.create_dataset()
    job = create_job(gateway.scicat, "archive", pid)
    assert (await gateway.http.post(JOBS, json=job, auth=AUTH)).status_code == 201

    retyped = await gateway.http.post(JOBS, json={**job, "type": "retrieve"}, auth=AUTH)
    relisted = await gateway.http.post(JOBS, json=v4_job(job["id"], pid, "other/1"), auth=AUTH)

    assert retyped.status_code == 409
    assert "already submitted as an archive job" in retyped.json()["detail"]
    assert relisted.status_code == 409
    assert "already submitted with another dataset list" in relisted.json()["detail"]


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
        ({"type": "archive"}, "The job has no `id`"),
        ({"id": "j-2", "type": "publish"}, "Job type 'publish' is not one the archiver runs"),
        (v4_job("j-3"), "The job lists no datasets"),
        (
            {"id": "j-4", "type": "archive", "jobParams": {"datasetList": [{"pid": ""}]}},
            "The job's datasetList[0] is malformed: pid: Value error, dataset pid '' is empty",
        ),
        (v4_job("j-5", "p/1", "p/1"), "The job lists a dataset more than once"),
        (v4_job("a b", "p/1"), "may hold only letters, digits"),
        (v4_job("../x", "p/1"), "may hold only letters, digits"),
        (v4_job("..", "p/1"), "(and not only dots)"),
        (v4_job("x" * 200, "p/1"), "is not 1 to 128 characters long"),
        (
            {
                "id": "j-6",
                "type": "archive",
                "jobParams": {"datasetList": [{"pid": "p/1", "files": 5}]},
            },
            "The job's datasetList[0].files is not a list of file paths",
        ),
        (
            {
                "id": "j-7",
                "type": "archive",
                "jobParams": {"datasetList": [{"pid": "p/1", "files": [5]}]},
            },
            "The job's datasetList[0] is malformed: files.0: Input should be a valid string",
        ),
        (
            {"id": "j-8", "type": "archive", "jobParams": "x"},
            "The job's jobParams is not an object",
        ),
        (
            {"id": "j-9", "type": "archive", "jobParams": {"datasetList": "x"}},
            "The job's datasetList is not a list",
        ),
        (
            v4_job("j-10", "20.500.11935/a/raw_files/x"),
            "has a segment named 'raw_files', a folder of the layout",
        ),
        (
            v4_job("j-11", *(f"20.500.11935/{n}" for n in range(100_000))),
            "The job lists 100,000 datasets; the archiver takes at most 1,024 per job",
        ),
    ],
    ids=[
        "no-id",
        "type",
        "no-datasets",
        "empty-pid",
        "repeated-pid",
        "id-with-space",
        "id-climbing",
        "id-dots",
        "id-too-long",
        "files-not-a-list",
        "files-not-strings",
        "jobparams-not-an-object",
        "datasetlist-not-a-list",
        "pid-nesting",
        "100000-datasets",
    ],
)
async def test_malformed_jobs_get_a_422_that_says_why(
    gateway: Gateway, body: dict, message: str
) -> None:
    reply = await gateway.http.post(JOBS, json=body, auth=AUTH)

    assert reply.status_code == 422, reply.text
    assert message in reply.json()["detail"][0]["msg"]


@pytest.mark.parametrize(
    "raw", ["[1]", '"job"', "NaN", '{"id": NaN, "type": "archive"}', "{"], ids=str
)
async def test_job_bodies_that_are_no_job_object_get_a_422(gateway: Gateway, raw: str) -> None:
    reply = await gateway.http.post(
        JOBS, content=raw, headers={"Content-Type": "application/json"}, auth=AUTH
    )

    assert reply.status_code == 422, reply.text
    assert reply.json()["detail"]


@pytest.mark.parametrize("job_id", ["a b", "x" * 200, "%2E%2E"], ids=["space", "long", "dots"])
async def test_reading_a_job_with_a_malformed_id_is_422(gateway: Gateway, job_id: str) -> None:
    reply = await gateway.http.get(f"{JOBS}/{job_id}", auth=AUTH)

    assert reply.status_code == 422, reply.text
    assert "job id" in reply.json()["detail"][0]["msg"]
