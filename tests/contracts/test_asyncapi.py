"""The committed AsyncAPI document is current, valid AsyncAPI 3.0, and says what contracts say."""

import json
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from contracts.asyncapi import render_asyncapi_yaml, subject_matches
from devstack.processes import tool_path

DOC = Path(__file__).parents[2] / "docs" / "asyncapi.yaml"
# The official AsyncAPI 3.0.0 JSON schema, from the npm package @asyncapi/specs 6.11.1
# (schemas/3.0.0-without-$id.json, Apache-2.0).
ASYNCAPI_SCHEMA = Path(__file__).parent / "asyncapi-3.0.0.schema.json"


def committed() -> dict[str, Any]:
    return yaml.safe_load(DOC.read_text())


def refs(node: object) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return own + [ref for value in node.values() for ref in refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in refs(value)]
    return []


def resolve(document: dict[str, Any], ref: str) -> object:
    node: Any = document
    for part in ref.removeprefix("#/").split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def test_committed_asyncapi_doc_is_current() -> None:
    """Regenerate with `make asyncapi-doc` when this fails."""
    assert DOC.read_text() == render_asyncapi_yaml()


def test_the_cli_writes_the_committed_document(tmp_path: Path) -> None:
    """`archiver asyncapi-doc --output FILE` writes what is committed."""
    out = tmp_path / "asyncapi.yaml"
    subprocess.run(
        [tool_path("archiver"), "asyncapi-doc", "--output", str(out)], check=True, timeout=60
    )

    assert out.read_text() == DOC.read_text()


def test_document_is_valid_asyncapi_3() -> None:
    """The official AsyncAPI 3.0.0 JSON schema accepts it, and every $ref resolves in it."""
    document = committed()
    schema = json.loads(ASYNCAPI_SCHEMA.read_text())

    errors = [e.message for e in jsonschema.Draft7Validator(schema).iter_errors(document)]
    unresolved = []
    for ref in refs(document):
        try:
            resolve(document, ref)
        except (KeyError, TypeError):
            unresolved.append(ref)

    assert errors == []
    assert unresolved == []
    assert document["asyncapi"] == "3.0.0"


def test_upload_finished_names_its_sender_its_receiver_and_its_payload() -> None:
    """gateway sends it, the datablocker's durable receives it, the payload is the model's."""
    document = committed()
    channel = document["channels"]["upload_finished"]
    operations = {
        name: op
        for name, op in document["operations"].items()
        if op["channel"]["$ref"] == "#/channels/upload_finished"
    }
    payload = resolve(document, "#/components/messages/UploadFinished/payload/$ref")

    assert channel["address"] == "upload.finished"
    assert {name: op["action"] for name, op in operations.items()} == {
        "gateway.sends.upload_finished": "send",
        "datablocker--upload_finished.receives.upload_finished": "receive",
    }
    assert payload == "#/components/schemas/UploadFinished"
    assert document["components"]["schemas"]["UploadFinished"]["required"] == [
        "occurred_at",
        "pid",
        "owner_group",
        "create_archiving_job",
        "source",
    ]
    assert document["components"]["schemas"]["UploadFinished"]["additionalProperties"] is False


def test_a_wildcard_consumer_receives_both_job_kinds() -> None:
    """ltsmover's `job.requested.>` durable is a receiver of archive and retrieve jobs."""
    operations = committed()["operations"]

    assert operations["ltsmover--job_requested_all.receives.job_requested_archive"]["action"] == (
        "receive"
    )
    assert operations["ltsmover--job_requested_all.receives.job_requested_retrieve"][
        "x-jetstream"
    ] == {
        "stream": "ARCHIVER",
        "durable": "ltsmover--job_requested_all",
        "filter_subject": "job.requested.>",
        "ack_wait_s": 30,
        "max_deliver": 12,
        "max_ack_pending": 64,
    }


def test_nats_wildcards_match_as_the_server_does() -> None:
    """`>` takes one or more tokens, `*` exactly one."""
    assert subject_matches("job.requested.>", "job.requested.archive")
    assert not subject_matches("job.requested.>", "job.requested")
    assert subject_matches("deadletter.*", "deadletter.verifier")
    assert not subject_matches("deadletter.*", "deadletter.verifier.x")
    assert not subject_matches("lts.moved", "lts.verified")
