"""`archiver replay`: which events are selected, and re-publishing them over a real nats-server."""

import asyncio
import json
from datetime import UTC, datetime

import pytest
from nats.js import JetStreamContext
from typer.testing import CliRunner

from archiver.cli import app
from archiver.durations import parse_duration, parse_point_in_time
from archiver.operator_bus import StoredMessage
from archiver.replaying import ReplaySelection, replay, select_events, subject_matches
from contracts import subjects
from contracts.events import (
    DatasetArchived,
    JobDataset,
    JobRequested,
    JobStatusChanged,
    LtsVerified,
    UploadFinished,
)
from runtime.provisioning import provision
from runtime.publishing import publish_event
from tests.conftest import operator_env

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def stored(seq: int, subject: str, body: object, minute: int = 0) -> StoredMessage:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return StoredMessage(
        stream="ARCHIVER",
        seq=seq,
        subject=subject,
        data=data,
        headers={"Nats-Msg-Id": f"original-{seq}"},
        time=T0.replace(minute=minute),
    )


LOG = [
    stored(1, "upload.finished", {"pid": "p/1", "owner_group": "g"}, 0),
    stored(
        2,
        "job.requested.archive",
        {"job_id": "j1", "datasets": [{"pid": "p/1"}, {"pid": "p/2"}]},
        5,
    ),
    stored(3, "lts.moved", {"job_id": "j1", "pid": "p/1", "attempt": 0}, 10),
    stored(4, "lts.verified", {"job_id": "j1", "pid": "p/2", "ok": True}, 15),
    stored(5, "job.status", {"job_id": "j2", "status_code": "inProgress"}, 20),
    stored(6, "upload.finished", b"\x00not json", 25),
    stored(7, "lts.verified", {"job_id": "j2", "pid": "p/1", "ok": False}, 30),
]


def seqs(selection: ReplaySelection) -> list[int]:
    return [m.seq for m in select_events(LOG, selection)]


def test_selecting_by_job_takes_every_event_naming_the_job() -> None:
    """`--job j1`: the request and the job's per-datablock events, in log order."""
    assert seqs(ReplaySelection(job_id="j1")) == [2, 3, 4]


def test_selecting_by_dataset_includes_the_job_requests_that_list_it() -> None:
    """`--dataset p/2`: events whose pid is p/2, and job requests with p/2 among their datasets."""
    assert seqs(ReplaySelection(pid="p/2")) == [2, 4]
    assert seqs(ReplaySelection(pid="p/1")) == [1, 2, 3, 7]


def test_selecting_by_subject_narrows_further() -> None:
    """`--subject` (wildcards allowed) is combined with the other criteria."""
    assert seqs(ReplaySelection(pid="p/1", subject="lts.*")) == [3, 7]
    assert seqs(ReplaySelection(job_id="j1", subject="job.requested.>")) == [2]
    assert seqs(ReplaySelection(job_id="j1", subject="lts.verified")) == [4]


def test_selecting_by_time_takes_what_was_stored_since() -> None:
    """`--since`: stored at or after the time; a body that is not JSON is never replayed."""
    assert seqs(ReplaySelection(since=T0.replace(minute=15))) == [4, 5, 7]
    assert seqs(ReplaySelection(since=T0.replace(minute=15), job_id="j2")) == [5, 7]


def test_a_selection_must_name_a_job_a_dataset_or_a_time() -> None:
    """A bare `--subject` would replay the whole log: refused."""
    assert not ReplaySelection(subject="lts.moved").narrowed
    assert ReplaySelection(job_id="j1").narrowed


@pytest.mark.parametrize(
    ("pattern", "subject", "expected"),
    [
        ("lts.moved", "lts.moved", True),
        ("lts.*", "lts.moved", True),
        ("lts.*", "lts.moved.x", False),
        ("job.requested.>", "job.requested.archive", True),
        ("job.requested.>", "job.requested", False),
        ("lts.moved", "lts.verified", False),
    ],
)
def test_subject_patterns_follow_nats_wildcards(pattern: str, subject: str, expected: bool) -> None:
    """`*` matches one token, a final `>` one or more."""
    assert subject_matches(pattern, subject) is expected


def test_since_accepts_iso_times_and_durations_ago() -> None:
    """`2h` means two hours before now; an ISO time without offset is UTC."""
    now = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)

    assert parse_point_in_time("2h", now) == datetime(2025, 3, 1, 10, 0, tzinfo=UTC)
    assert parse_point_in_time("2025-02-28T08:30", now) == datetime(2025, 2, 28, 8, 30, tzinfo=UTC)
    assert parse_duration("90s").total_seconds() == 90
    with pytest.raises(ValueError, match="not a time"):
        parse_point_in_time("yesterday-ish", now)


# --- over the real server ---------------------------------------------------------


async def publish_history(js: JetStreamContext) -> None:
    """Job j1 over datasets p/1 and p/2, and an unrelated upload of p/9 (ARCHIVER seq 1..5)."""
    at = T0
    job = JobRequested(
        occurred_at=at,
        job_id="j1",
        job_type="archive",
        datasets=(JobDataset(pid="p/1"), JobDataset(pid="p/2")),
        scicat_api="v4",
    )
    events = [
        (subjects.JOB_REQUESTED_ARCHIVE, job),
        (
            subjects.UPLOAD_FINISHED,
            UploadFinished(
                occurred_at=at,
                pid="p/9",
                owner_group="g",
                create_archiving_job=False,
                source="finalize",
            ),
        ),
        (
            subjects.LTS_VERIFIED,
            LtsVerified(
                occurred_at=at,
                job_id="j1",
                job_type="archive",
                pid="p/1",
                archive_id="a/p-1_0.tar",
                location="a/p-1_0.tar",
                attempt=0,
                ok=True,
            ),
        ),
        (
            subjects.DATASET_ARCHIVED,
            DatasetArchived(occurred_at=at, pid="p/1", job_id="j1", archive_ids=("a/p-1_0.tar",)),
        ),
        (
            subjects.JOB_STATUS,
            JobStatusChanged(
                occurred_at=at, job_id="j1", status_code="inProgress", status_message="Archiving"
            ),
        ),
    ]
    for subject, event in events:
        await publish_event(js, subject, event, msg_id=event.dedup_id(), correlation_id="corr-1")


async def test_replay_re_publishes_the_selected_events_with_new_ids(
    clean_js: JetStreamContext,
) -> None:
    """Each selected event is stored again on its subject, same body, `replay:<run>:<seq>` id."""
    await provision(clean_js)
    await publish_history(clean_js)

    done = await replay(clean_js, ReplaySelection(pid="p/1"), run_id="run1", dry_run=False)
    copies = [await clean_js.get_msg("ARCHIVER", seq) for seq in (6, 7, 8)]
    originals = [await clean_js.get_msg("ARCHIVER", seq) for seq in (1, 3, 4)]

    assert [(r.original.seq, r.published_seq) for r in done] == [(1, 6), (3, 7), (4, 8)]
    assert (await clean_js.stream_info("ARCHIVER")).state.messages == 8
    assert [c.subject for c in copies] == [
        "job.requested.archive",
        "lts.verified",
        "dataset.archived",
    ]
    assert [c.data for c in copies] == [o.data for o in originals]
    assert [(c.headers or {})["Nats-Msg-Id"] for c in copies] == [
        "replay:run1:1",
        "replay:run1:3",
        "replay:run1:4",
    ]
    assert {(c.headers or {})["X-Correlation-ID"] for c in copies} == {"corr-1"}


async def test_a_dry_run_publishes_nothing(clean_js: JetStreamContext) -> None:
    """`--dry-run` lists what would be replayed and leaves the stream as it was."""
    await provision(clean_js)
    await publish_history(clean_js)

    done = await replay(clean_js, ReplaySelection(job_id="j1"), run_id="run2", dry_run=True)

    assert [(r.original.seq, r.published_seq) for r in done] == [
        (1, None),
        (3, None),
        (4, None),
        (5, None),
    ]
    assert (await clean_js.stream_info("ARCHIVER")).state.messages == 5


async def test_the_replay_command_filters_by_subject_and_time_on_the_server(
    clean_js: JetStreamContext, nats_server_process
) -> None:
    """`archiver replay --job j1 --subject job.status --since ...` re-publishes only that event."""
    await provision(clean_js)
    await publish_history(clean_js)
    url = nats_server_process.url

    dry = await asyncio.to_thread(
        CliRunner().invoke,
        app,
        ["replay", "--job", "j1", "--subject", "job.status", "--since", "1h", "--dry-run"],
        env={"COLUMNS": "200", "NATS_URL": url, **operator_env()},
    )
    real = await asyncio.to_thread(
        CliRunner().invoke,
        app,
        ["replay", "--job", "j1", "--subject", "job.status", "--nats-url", url],
        env={"COLUMNS": "200", **operator_env()},
    )
    refused = await asyncio.to_thread(
        CliRunner().invoke,
        app,
        ["replay", "--subject", "lts.moved", "--nats-url", url],
        env=operator_env(),
    )
    copy = await clean_js.get_msg("ARCHIVER", 6)

    assert dry.exit_code == 0, dry.output
    assert "Would replay: 1 event(s)" in dry.output
    assert "dry run" in dry.output
    assert real.exit_code == 0, real.output
    assert "job.status" in real.output
    assert (await clean_js.stream_info("ARCHIVER")).state.messages == 6
    assert copy.subject == "job.status"
    assert refused.exit_code == 2


# --- each original once, never an earlier copy of it ----------------------------------


def copy_of(seq: int, original: StoredMessage, header: str | None, msg_id: str) -> StoredMessage:
    headers = {"Nats-Msg-Id": msg_id}
    if header is not None:
        headers["Archiver-Copy-Of"] = header
    return StoredMessage("ARCHIVER", seq, original.subject, original.data, headers, original.time)


def test_copies_of_replays_and_retries_are_never_selected_beside_their_original() -> None:
    """Copies marked by header, or (older ones) by a replay/retry message id, are skipped."""
    log = [
        *LOG,
        copy_of(8, LOG[2], "ARCHIVER:3", "replay:run1:3"),
        copy_of(9, LOG[2], None, "replay:run0:3"),
        copy_of(10, LOG[3], None, "retry:ARCHIVER:4:17"),
    ]

    assert [m.seq for m in select_events(log, ReplaySelection(job_id="j1"))] == [2, 3, 4]


def test_the_oldest_copy_stands_in_once_for_an_original_that_aged_out() -> None:
    """Original #3 is gone from the log: its first copy is replayed, its second is not."""
    log = [
        copy_of(8, LOG[2], "ARCHIVER:3", "replay:run1:3"),
        copy_of(9, LOG[2], "ARCHIVER:3", "replay:run2:8"),
    ]

    chosen = select_events(log, ReplaySelection(job_id="j1"), lambda origin: False)

    assert [m.seq for m in chosen] == [8]


async def test_replaying_twice_selects_the_originals_only(clean_js: JetStreamContext) -> None:
    """The second `replay --job j1` re-publishes seq 1, 3, 4, 5 again, not the first run's 6..9."""
    await provision(clean_js)
    await publish_history(clean_js)

    first = await replay(clean_js, ReplaySelection(job_id="j1"), run_id="run1", dry_run=False)
    second = await replay(clean_js, ReplaySelection(job_id="j1"), run_id="run2", dry_run=False)
    copy = await clean_js.get_msg("ARCHIVER", 10)

    assert [(r.original.seq, r.published_seq) for r in first] == [(1, 6), (3, 7), (4, 8), (5, 9)]
    assert [(r.original.seq, r.published_seq) for r in second] == [
        (1, 10),
        (3, 11),
        (4, 12),
        (5, 13),
    ]
    assert (copy.headers or {})["Archiver-Copy-Of"] == "ARCHIVER:1"
    assert (copy.headers or {})["Nats-Msg-Id"] == "replay:run2:1"
