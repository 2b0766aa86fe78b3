"""Dataset creation follows SciCat's DTOs, pid rules and schema defaults."""

from __future__ import annotations

from tests.devstack.scicat.conftest import Standin, create_dataset, encoded, raw_dataset


def test_raw_dataset_gets_prefixed_pid_and_lifecycle_defaults(standin: Standin) -> None:
    """The server makes `PREFIX/uuid4` and fills the LifecycleSchema defaults."""
    with standin.client("ingestor") as client:
        created = create_dataset(client)
    prefix, _, uuid_part = created["pid"].partition("/")
    assert prefix == "20.500.11935"
    assert len(uuid_part) == 36
    lifecycle = created["datasetlifecycle"]
    assert lifecycle["archivable"] is True
    assert lifecycle["retrievable"] is False
    assert lifecycle["publishable"] is False
    assert lifecycle["isOnCentralDisk"] is True
    assert lifecycle["archiveStatusMessage"] == "datasetCreated"
    assert lifecycle["retrieveStatusMessage"] == ""
    assert lifecycle["retrieveIntegrityCheck"] is False
    assert created["sourceFolder"] == "/data/run42"  # the schema strips the trailing slash
    assert created["principalInvestigators"] == ["pi@example.org"]
    assert created["principalInvestigator"] == "pi@example.org"  # v3 view
    assert created["size"] == 0
    assert created["creationTime"] == "2024-05-01T12:00:00.000Z"


def test_missing_required_field_is_400(standin: Standin) -> None:
    """A raw dataset without creationLocation is refused."""
    body = raw_dataset()
    del body["creationLocation"]
    with standin.client("ingestor") as client:
        reply = client.post("/v3/Datasets", json=body)
    assert reply.status_code == 400
    assert "creationLocation must be a string" in reply.json()["message"]


def test_unknown_top_level_key_is_400(standin: Standin) -> None:
    """forbidNonWhitelisted: an unknown key is a validation error, in v3 and v4."""
    with standin.client("ingestor") as client:
        v3 = client.post("/v3/Datasets", json=raw_dataset(colour="blue"))
        v4_body = {**raw_dataset(), "principalInvestigators": ["pi"], "colour": "blue"}
        del v4_body["principalInvestigator"]
        v4 = client.post("/v4/datasets", json=v4_body)
    assert v3.status_code == 400
    assert "property colour should not exist" in v3.json()["message"]
    assert v4.status_code == 400
    assert v4.json()["message"] == ["property colour should not exist"]
    assert v4.json()["error"] == "Bad Request"


def test_derived_dataset_requires_investigator_and_inputs(standin: Standin) -> None:
    """Derived datasets need investigator, inputDatasets and usedSoftware."""
    body = raw_dataset(type="derived")
    for key in ("principalInvestigator", "creationLocation"):
        del body[key]
    with standin.client("ingestor") as client:
        refused = client.post("/v3/datasets", json=body)
        body |= {"investigator": "me", "inputDatasets": ["a/b"], "usedSoftware": ["x"]}
        accepted = client.post("/v3/datasets", json=body)
    assert refused.status_code == 400
    assert accepted.status_code == 201
    assert accepted.json()["investigator"] == "me"


def test_caller_pid_is_kept_and_a_duplicate_is_409(standin: Standin) -> None:
    """A supplied pid is used as is; the same pid again is a conflict."""
    pid = "20.500.11935/fixed-pid-0001"
    with standin.client("ingestor") as client:
        first = client.post("/v3/Datasets", json=raw_dataset(pid=pid))
        second = client.post("/v3/Datasets", json=raw_dataset(pid=pid))
    assert first.json()["pid"] == pid
    assert second.status_code == 409
    assert second.json()["message"] == f"A dataset with pid {pid} already exists!"


def test_lifecycle_in_create_body_is_accepted_and_defaulted(standin: Standin) -> None:
    """A datasetlifecycle in the create body is stored, the rest defaulted."""
    with standin.client("ingestor") as client:
        created = create_dataset(client, datasetlifecycle={"archivable": False})
    assert created["datasetlifecycle"]["archivable"] is False
    assert created["datasetlifecycle"]["isOnCentralDisk"] is True


def test_is_valid_reports_reasons(standin: Standin) -> None:
    """isValid answers {valid: true} or {valid: false, reason: [...]}."""
    with standin.client("ingestor") as client:
        good = client.post("/v3/datasets/isValid", json=raw_dataset())
        bad = client.post("/v3/datasets/isValid", json={"type": "raw", "owner": "x"})
    assert good.json() == {"valid": True}
    assert bad.status_code == 200
    assert bad.json()["valid"] is False
    assert "sourceFolder must be a string" in bad.json()["reason"]


def test_get_needs_encoded_pid_and_routes_are_case_insensitive(standin: Standin) -> None:
    """GET /Datasets/{pid%2F...} works in any case; an unencoded slash does not route."""
    with standin.client("ingestor") as client:
        pid = create_dataset(client)["pid"]
        upper = client.get(f"/V3/DATASETS/{encoded(pid)}")
        lower = client.get(f"/v3/datasets/{encoded(pid)}")
        unencoded = client.get(f"/v3/Datasets/{pid}")
    assert upper.status_code == 200
    assert upper.json()["pid"] == pid
    assert lower.json()["pid"] == pid
    assert unencoded.status_code == 404
