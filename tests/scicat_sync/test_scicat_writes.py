"""scicat_sync's writes as SciCat stores them: the stand-in configured as the dev site, where
the archiver's account holds only the rights docs/scicat.md lists (no admin group)."""

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import httpx
import pytest
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from pydantic import SecretStr
from scicat_sdk_py.models import LifecycleClass

from contracts import kv
from contracts.events import Datablock, DatablocksCreated, DataFile, DatasetPackingFailed
from contracts.scicat import LifecyclePatch
from runtime.provisioning import provision
from runtime.scicat import RetryPolicy, ScicatClient
from services.scicat_sync import syncing
from services.scicat_sync.dataset_writes import open_dataset_writes
from services.scicat_sync.ledger import AppliedLedger
from tests.scicat_sync.conftest import ARCHIVER, JOB_CREATOR, Standin

SHA = "d" * 64
T0 = datetime(2025, 8, 1, 10, 0, tzinfo=UTC)


@pytest.fixture
async def archiver(standin: Standin) -> AsyncIterator[ScicatClient]:
    """The archiver's account (archiveManager) on the stand-in."""
    async with httpx.AsyncClient(base_url=f"{standin.url}/", timeout=10) as http:
        yield ScicatClient(
            http, username=ARCHIVER[0], password=SecretStr(ARCHIVER[1]), retry=RetryPolicy(5)
        )


def packed(pid: str, blocks: int) -> DatablocksCreated:
    stem = f"openem-network/datasets/{pid}/datablocks/{pid.replace('/', '-')}"
    return DatablocksCreated(
        occurred_at=T0,
        pid=pid,
        create_archiving_job=False,
        owner_group="group1",
        datablocks=tuple(
            Datablock(
                archive_id=f"{stem}_{n}.tar",
                size=4,
                packed_size=2048,
                tar_sha256=SHA,
                data_file_list=(DataFile(path=f"raw/{n}", size=4, time=T0, chk=SHA),),
            )
            for n in range(blocks)
        ),
    )


async def test_datablocks_are_registered_without_reading_the_datablocks_route(
    archiver: ScicatClient, ledger: AppliedLedger, standin: Standin, clean_js: JetStreamContext
) -> None:
    """The archiver may not list another group's datablocks (403: DatasetDatablockReadAny is
    ADMIN_GROUPS' only, backend src/casl/casl-ability.factory.ts), but reads them included in
    the dataset (src/datasets/datasets.service.ts findAllComplete, relations unfiltered): a
    second delivery finds the blocks and posts none."""
    pid = standin.create_dataset()
    event = packed(pid, 2)
    writes = await open_dataset_writes(clean_js)

    first = await syncing.register_datablocks(archiver, ledger, event, writes=writes)
    again = await syncing.register_datablocks(archiver, ledger, event, writes=writes)
    with standin.client(*ARCHIVER) as http:
        listed = http.get(f"/v3/Datasets/{quote(pid, safe='')}/datablocks")

    assert (first.posted, again.posted) == (2, 0)
    assert listed.status_code == 403
    assert len(standin.get(f"/v3/Datasets/{quote(pid, safe='')}/datablocks")) == 2


async def test_a_packing_failure_reads_back_with_the_sdks_lifecycle_model(
    archiver: ScicatClient, ledger: AppliedLedger, standin: Standin, clean_js: JetStreamContext
) -> None:
    """archiveReturnMessage is written as an object, as SciCat's OpenAPI types it (backend
    src/datasets/schemas/lifecycle.schema.ts), so scicat-sdk-py's LifecycleClass reads it."""
    pid = standin.create_dataset()
    event = DatasetPackingFailed(occurred_at=T0, pid=pid, kind="user", reason="raw/a is missing")

    await syncing.record_packing_failure(
        archiver, ledger, event, writes=await open_dataset_writes(clean_js)
    )
    lifecycle = LifecycleClass.from_dict(
        standin.get(f"/v3/Datasets/{quote(pid, safe='')}/datasetlifecycle")
    )

    assert lifecycle.archive_status_message == "missingFilesError"
    assert lifecycle.archive_return_message == {"message": "raw/a is missing"}
    assert lifecycle.archivable is True


async def test_two_instances_write_one_dataset_one_at_a_time(
    archiver: ScicatClient, ledger: AppliedLedger, standin: Standin, clean_js: JetStreamContext
) -> None:
    """Two scicat_sync instances (each its own locks, one shared lease bucket): one registers
    datablocks while the other, 90 ms later, patches the lifecycle; SciCat's read-merge-write
    (backend src/datasets/datasets.controller.ts) loses neither, as the lease orders them."""
    with contextlib.suppress(NotFoundError):
        await clean_js.delete_key_value(kv.SCICAT_SYNC_WRITE_LEASES)
    await provision(clean_js)  # an empty lease bucket, with its TTL
    one, other = await open_dataset_writes(clean_js), await open_dataset_writes(clean_js)
    pid = standin.create_dataset()
    with standin.client("admin") as http:  # a packing failure before: not archivable
        http.patch(
            f"/v3/Datasets/{quote(pid, safe='')}/datasetlifecycle",
            json={"archivable": False, "archiveStatusMessage": "missingFilesError"},
        ).raise_for_status()
    retrieving = LifecyclePatch(retrieve_status_message="started")

    async def later_lifecycle() -> tuple[str, ...]:
        await asyncio.sleep(0.09)
        at = T0 + timedelta(seconds=1)
        return await syncing.apply_lifecycle(archiver, ledger, pid, retrieving, at, writes=other)

    outcome, fields = await asyncio.gather(
        syncing.register_datablocks(archiver, ledger, packed(pid, 2), writes=one),
        later_lifecycle(),
    )
    dataset = standin.get(f"/v3/Datasets/{quote(pid, safe='')}")

    assert (outcome.posted, fields) == (2, ("retrieveStatusMessage",))
    assert (dataset["packedSize"], dataset["numberOfFilesArchived"]) == (4096, 2)
    lifecycle = dataset["datasetlifecycle"]
    assert (
        lifecycle["archivable"],
        lifecycle["archiveStatusMessage"],
        lifecycle["retrieveStatusMessage"],
    ) == (True, "datasetCreated", "started")


def test_the_archivers_two_accounts_split_creating_and_updating_jobs(standin: Standin) -> None:
    """SciCat's job tiers are exclusive (backend src/casl/casl-ability.factory.ts
    jobsEndpointAccess): the job creator creates a job for group1's dataset but may not
    update it, and the archiver updates and reads it but may not create one (403 from the
    PoliciesGuard, "Forbidden resource", either way)."""
    pid = standin.create_dataset()
    body = {
        "type": "archive",
        "ownerGroup": "group1",
        "jobParams": {"datasetList": [{"pid": pid, "files": []}]},
    }
    status = {"statusCode": "inProgress", "statusMessage": "copying"}
    with standin.client(*JOB_CREATOR) as creator, standin.client(*ARCHIVER) as archiver:
        created = creator.post("/v4/jobs", json=body)
        job_path = f"/v4/jobs/{created.json()['id']}"
        creator_update = creator.patch(job_path, json=status)
        archiver_create = archiver.post("/v4/jobs", json=body)
        archiver_update = archiver.patch(job_path, json=status)
        archiver_read = archiver.get(job_path)

    assert created.status_code == 201
    assert creator_update.status_code == 403
    assert archiver_create.status_code == 403
    assert archiver_create.json()["message"] == "Forbidden resource"
    assert archiver_update.status_code == 200
    assert archiver_read.json()["statusCode"] == "inProgress"
