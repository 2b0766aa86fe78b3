"""The users and permissions are derived from the contracts, and the deploy files are current."""

import ast
from pathlib import Path

from contracts import kv, streams, subjects
from contracts.bus_permissions import EMITS, bus_users, publisher_of, service_user
from runtime.nats_server_config import deploy_files

ROOT = Path(__file__).resolve().parents[2]


def test_committed_nats_configuration_is_current() -> None:
    """Regenerate with `archiver nats-config` when this fails."""
    for name, text in deploy_files().items():
        assert (ROOT / "deploy" / name).read_text() == text, name


def _subjects_named_in(service: str) -> set[str]:
    """Every `subjects.X` a service's modules refer to (docstrings do not count)."""
    named: set[str] = set()
    for module in (ROOT / "services" / service).glob("*.py"):
        for node in ast.walk(ast.parse(module.read_text())):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id == "subjects"
            ):
                named.add(getattr(subjects, node.attr))
    return named


def test_each_service_may_publish_every_event_subject_its_code_names() -> None:
    """A subject a service names and does not consume is one it emits: it must be allowed."""
    event_subjects = {s for spec in (streams.ARCHIVER, streams.MINIO) for s in spec.subjects}
    for service in streams.SERVICES:
        consumed = {spec.filter_subject for spec in streams.consumers_of(service)}
        named = _subjects_named_in(service) & event_subjects
        assert named - consumed <= set(EMITS[service]), service


def test_every_event_subject_has_exactly_one_publisher() -> None:
    """Each stored subject is published by one user: a forged one names its only suspect."""
    stored = [s for s in streams.ARCHIVER.subjects if s != subjects.JOB_REQUESTED_ALL]
    stored += [subjects.JOB_REQUESTED_ARCHIVE, subjects.JOB_REQUESTED_RETRIEVE]
    publishers = [service for emitted in EMITS.values() for service in emitted]

    assert sorted(publishers) == sorted(stored)
    assert publisher_of(subjects.MINIO_EVENTS) == "minio"


def test_a_service_reaches_only_its_own_durables_and_buckets() -> None:
    """The verifier's allow-list, spelled out: its emitted subject, its dead letters, its one
    durable, and reads of the job records (a cancelled job's copy is not verified); it writes
    no bucket."""
    assert service_user("verifier").publish == (
        "lts.verified",
        "deadletter.verifier",
        "$JS.API.CONSUMER.INFO.ARCHIVER.verifier--lts_moved",
        "$JS.API.CONSUMER.MSG.NEXT.ARCHIVER.verifier--lts_moved",
        "$JS.ACK.ARCHIVER.verifier--lts_moved.>",
        "$JS.API.STREAM.INFO.KV_jobs",
        "$JS.API.DIRECT.GET.KV_jobs",
        "$JS.API.DIRECT.GET.KV_jobs.>",
        "$JS.API.STREAM.MSG.GET.KV_jobs",
        "$JS.API.CONSUMER.CREATE.KV_jobs",
        "$JS.API.CONSUMER.CREATE.KV_jobs.>",
        "$JS.API.CONSUMER.INFO.KV_jobs.*",
        "$JS.API.CONSUMER.DELETE.KV_jobs.*",
    )
    assert service_user("verifier").subscribe == ("_INBOX_verifier.>",)


def test_no_user_but_the_provisioner_may_create_or_change_a_stream() -> None:
    """Stream CREATE/UPDATE/DELETE/PURGE appear in no other user's allow-list."""
    for user in bus_users():
        verbs = {
            verb
            for subject in user.publish
            for verb in ("CREATE", "UPDATE", "DELETE", "PURGE")
            if subject.startswith(f"$JS.API.STREAM.{verb}.")
        }
        assert verbs <= ({"CREATE", "UPDATE"} if user.name == "provisioner" else set()), user.name


def test_every_bucket_is_written_by_a_service() -> None:
    """A bucket nobody writes would be dead weight; its writers are real services."""
    for bucket in kv.BUCKETS:
        assert bucket.writers
        assert set(bucket.writers) <= set(streams.SERVICES)


def test_the_server_configuration_has_no_open_door() -> None:
    """No monitoring port, no user for clients without credentials, authorization for all."""
    config = deploy_files()["nats.conf"]
    settings = [line.split(":")[0].strip() for line in config.splitlines() if ":" in line]

    assert not {"http", "http_port", "https", "https_port", "no_auth_user"} & set(settings)
    assert "authorization {" in config
    assert config.count("password: $NATS_") == len(bus_users())
