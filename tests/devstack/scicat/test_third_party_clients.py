"""pyscicat and scitacean, real SciCat clients, work against the stand-in unchanged."""

from __future__ import annotations

from datetime import UTC, datetime

from pyscicat.client import ScicatClient, from_credentials
from pyscicat.model import CreateDatasetOrigDatablockDto, DataFile, RawDataset
from scitacean import Client, Dataset
from scitacean.model import UploadOrigDatablock

from tests.devstack.scicat.conftest import Standin


def test_pyscicat_logs_in_creates_and_reads_back(standin: Standin) -> None:
    """pyscicat: auth/login, POST Datasets, POST Datasets/{pid}/origdatablocks, GETs."""
    client: ScicatClient = from_credentials(f"{standin.url}/v3", "ingestor", "aman")
    dataset = RawDataset(
        owner="Ingestor",
        ownerGroup="group1",
        accessGroups=["group2"],
        contactEmail="ingestor@example.org",
        creationTime="2024-05-01T12:00:00Z",
        datasetName="pyscicat run",
        sourceFolder="/data/pyscicat",
        principalInvestigator="pi@example.org",
        creationLocation="/PSI/SLS",
        scientificMetadata={"energy": {"value": 12, "unit": "keV"}},
    )
    pid = client.datasets_create(dataset)
    files = [
        DataFile(path="a.h5", size=100, time="2024-05-01T12:00:00Z", chk="abc"),
        DataFile(path="b.h5", size=50, time="2024-05-01T12:00:01Z"),
    ]
    block = client.datasets_origdatablock_create(
        pid, CreateDatasetOrigDatablockDto(size=150, dataFileList=files)
    )
    read = client.datasets_get_one(pid)
    blocks = client.datasets_origdatablocks_get_one(pid)
    assert block["datasetId"] == pid
    assert read["datasetName"] == "pyscicat run"
    assert read["principalInvestigator"] == "pi@example.org"
    assert (read["size"], read["numberOfFiles"]) == (150, 2)
    assert [f["path"] for f in blocks[0]["dataFileList"]] == ["a.h5", "b.h5"]


def test_scitacean_logs_in_creates_and_reads_back(standin: Standin) -> None:
    """scitacean: auth/login, v4 isValid + datasets + origdatablocks, v4 GET with include."""
    client = Client.from_credentials(
        url=f"{standin.url}/v3", username="ingestor", password="aman", allow_http=True
    )
    dataset = Dataset(
        type="raw",
        name="scitacean run",
        owner="Ingestor",
        owner_group="group1",
        access_groups=["group1"],
        contact_email="ingestor@example.org",
        creation_location="/PSI/SLS",
        creation_time=datetime(2024, 5, 1, 12, tzinfo=UTC),
        principal_investigators=["pi@example.org"],
        source_folder="/data/scitacean",
    )
    model = dataset.make_upload_model()
    client.scicat.validate_dataset_model(model)
    created = client.scicat.create_dataset_model(model)
    client.scicat.create_orig_datablock(
        UploadOrigDatablock(
            datasetId=created.pid,
            size=7,
            chkAlg="sha256",
            dataFileList=[{"path": "x.dat", "size": 7, "time": "2024-05-01T12:00:00Z"}],
        )
    )
    fetched = client.get_dataset(created.pid)
    assert fetched.name == "scitacean run"
    assert fetched.principal_investigators == ["pi@example.org"]
    assert fetched.size == 7
    assert [f.remote_path.posix for f in fetched.files] == ["x.dat"]
