"""Acking over a real nats-server: nothing handled twice, nothing lost, poison set aside."""

import asyncio
import json
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from nats.js import JetStreamContext

from contracts import streams, subjects
from contracts.events import UploadFinished
from runtime.metrics import REGISTRY
from runtime.provisioning import consumer_config, provision
from runtime.publishing import publish_event
from runtime.service_bus import Bus
from runtime.settling import PermanentError
from tests import inprocess_consumer
from tests.deadletters import dead_letters
from tests.polling import eventually

SPEC = replace(
    streams.DATABLOCKER_UPLOAD_FINISHED,
    durable="test--upload_finished",
    service="testsvc",
    max_deliver=3,
    backoff=(),
    nak_delays=(timedelta(milliseconds=200),),
)


def upload_finished(pid: str) -> UploadFinished:
    return UploadFinished(
        occurred_at=datetime.now(UTC),
        pid=pid,
        owner_group="group1",
        create_archiving_job=False,
        source="finalize",
    )


def consuming(
    url: str, handle: Callable[[UploadFinished], Awaitable[None]]
) -> AbstractAsyncContextManager[Bus]:
    """The test consumer running in this process, as a service would run it."""
    return inprocess_consumer.consuming(url, SPEC, UploadFinished, handle)


def consumer_counts() -> dict[str, float]:
    """The test consumer's counters in the process's metrics registry."""
    labels = {"service": SPEC.service, "consumer": SPEC.durable}

    def sample(name: str, **extra: str) -> float:
        return REGISTRY.get_sample_value(name, {**labels, **extra}) or 0.0

    return {
        "handled": sample("archiver_messages_handled_total"),
        "retried": sample("archiver_messages_retried_total"),
        "dead_lettered_permanent": sample(
            "archiver_messages_dead_lettered_total", cause="permanent"
        ),
        "dead_lettered_exhausted": sample(
            "archiver_messages_dead_lettered_total", cause="exhausted"
        ),
        "handler_runs": sample("archiver_handler_duration_seconds_count"),
    }


async def prepare(js: JetStreamContext) -> None:
    await provision(js)
    await js.add_consumer(SPEC.stream, consumer_config(SPEC))


async def test_an_acked_event_is_not_processed_again_after_restart(
    clean_js: JetStreamContext, nats_server_process
) -> None:
    """The durable remembers the ack across a service restart."""
    await prepare(clean_js)
    seen: list[str] = []

    async def handle(event: UploadFinished) -> None:
        seen.append(event.pid)

    async with consuming(nats_server_process.url, handle):
        await publish_event(clean_js, subjects.UPLOAD_FINISHED, upload_finished("p/1"), msg_id="1")
        await eventually(
            lambda: seen, "p/1 handled", done=lambda s: s == ["p/1"], timeout_s=5.0, interval_s=0.02
        )
    async with consuming(nats_server_process.url, handle):
        await asyncio.sleep(0.5)
    info = await clean_js.consumer_info(SPEC.stream, SPEC.durable)

    assert seen == ["p/1"]
    assert info.num_pending == 0
    assert info.num_ack_pending == 0


async def test_an_event_whose_handler_raised_is_redelivered(
    clean_js: JetStreamContext, nats_server_process
) -> None:
    """A transient failure is nak-ed with a delay and handled on the next delivery."""
    await prepare(clean_js)
    attempts: list[str] = []

    async def handle(event: UploadFinished) -> None:
        attempts.append(event.pid)
        if len(attempts) == 1:
            raise ConnectionError("landing zone briefly unreachable")

    async with consuming(nats_server_process.url, handle):
        await publish_event(clean_js, subjects.UPLOAD_FINISHED, upload_finished("p/2"), msg_id="2")
        await eventually(
            lambda: attempts,
            "p/2 handled twice",
            done=lambda a: len(a) == 2,
            timeout_s=5.0,
            interval_s=0.02,
        )
        await asyncio.sleep(0.2)
    info = await clean_js.consumer_info(SPEC.stream, SPEC.durable)

    assert attempts == ["p/2", "p/2"]
    assert info.num_ack_pending == 0
    assert await dead_letters(clean_js) == []


async def test_poison_is_dead_lettered_and_the_consumer_keeps_going(
    clean_js: JetStreamContext, nats_server_process
) -> None:
    """Undecodable and schema-invalid messages are set aside with a reason, once."""
    await prepare(clean_js)
    seen: list[str] = []

    async def handle(event: UploadFinished) -> None:
        seen.append(event.pid)

    async with consuming(nats_server_process.url, handle):
        await clean_js.publish(subjects.UPLOAD_FINISHED, b"\x00not json")
        await clean_js.publish(subjects.UPLOAD_FINISHED, json.dumps({"pid": "x"}).encode())
        await publish_event(clean_js, subjects.UPLOAD_FINISHED, upload_finished("p/3"), msg_id="3")
        await eventually(
            lambda: seen, "p/3 handled", done=lambda s: s == ["p/3"], timeout_s=5.0, interval_s=0.02
        )
        await asyncio.sleep(0.2)
    letters = await dead_letters(clean_js)

    assert [(d.subject, d.stream_seq, d.consumer) for d in letters] == [
        ("upload.finished", 1, "test--upload_finished"),
        ("upload.finished", 2, "test--upload_finished"),
    ]
    assert {d.reason for d in letters} == {"message does not match its contract"}
    assert "owner_group" in (letters[1].detail or "")


async def test_permanent_errors_and_exhausted_retries_are_dead_lettered(
    clean_js: JetStreamContext, nats_server_process
) -> None:
    """A PermanentError goes aside at once, a failure after 3 tries; the counters say so."""
    await prepare(clean_js)
    attempts: dict[str, int] = {}
    before = consumer_counts()

    async def handle(event: UploadFinished) -> None:
        attempts[event.pid] = attempts.get(event.pid, 0) + 1
        if event.pid == "p/permanent":
            raise PermanentError("Dataset p/permanent is unknown to SciCat", "404 Not Found")
        raise ConnectionError("still down")

    async with consuming(nats_server_process.url, handle):
        for pid in ("p/permanent", "p/flaky"):
            await publish_event(
                clean_js, subjects.UPLOAD_FINISHED, upload_finished(pid), msg_id=pid
            )
        await eventually(
            lambda: attempts,
            "p/flaky tried 3 times",
            done=lambda a: a.get("p/flaky") == 3,
            timeout_s=5.0,
            interval_s=0.02,
        )
        await asyncio.sleep(0.3)
    letters = {d.stream_seq: d for d in await dead_letters(clean_js)}

    assert attempts == {"p/permanent": 1, "p/flaky": 3}
    assert letters[1].reason == "Dataset p/permanent is unknown to SciCat"
    assert letters[1].detail == "404 Not Found"
    assert letters[2].reason == "gave up after 3 deliveries"
    assert letters[2].deliveries == 3
    assert "ConnectionError: still down" in (letters[2].detail or "")
    after = consumer_counts()
    assert {name: after[name] - before[name] for name in after} == {
        "handled": 0,
        "retried": 2,
        "dead_lettered_permanent": 1,
        "dead_lettered_exhausted": 1,
        "handler_runs": 4,
    }


async def test_a_repeated_msg_id_is_stored_once(clean_js: JetStreamContext) -> None:
    """Publishing the same event twice inside the duplicate window is a no-op."""
    await provision(clean_js)
    event = upload_finished("p/dup")
    first = await publish_event(clean_js, subjects.UPLOAD_FINISHED, event, msg_id=event.dedup_id())
    second = await publish_event(clean_js, subjects.UPLOAD_FINISHED, event, msg_id=event.dedup_id())

    assert first.duplicate is None
    assert second.duplicate is True
    assert second.seq == first.seq


SHORT_ACK_WAIT = replace(
    SPEC, durable="test--short_ack_wait", ack_wait=timedelta(seconds=1), max_deliver=3
)


async def test_a_handler_longer_than_the_ack_wait_runs_once(
    clean_js: JetStreamContext, nats_server_process
) -> None:
    """Heartbeats (in_progress) keep a 3 s job alive under a 1 s ack wait: no second run."""
    await provision(clean_js)
    await clean_js.add_consumer(SHORT_ACK_WAIT.stream, consumer_config(SHORT_ACK_WAIT))
    runs: list[str] = []

    async def slow(event: UploadFinished) -> None:
        runs.append(event.pid)
        await asyncio.sleep(3)

    async with inprocess_consumer.consuming(
        nats_server_process.url, SHORT_ACK_WAIT, UploadFinished, slow
    ):
        await publish_event(
            clean_js, subjects.UPLOAD_FINISHED, upload_finished("p/slow"), msg_id="s"
        )
        await eventually(
            lambda: runs,
            "p/slow started",
            done=lambda r: r == ["p/slow"],
            timeout_s=5.0,
            interval_s=0.02,
        )
        await asyncio.sleep(4.5)
    info = await clean_js.consumer_info(SHORT_ACK_WAIT.stream, SHORT_ACK_WAIT.durable)

    assert runs == ["p/slow"]
    assert info.num_redelivered == 0
    assert info.num_ack_pending == 0


async def test_stopping_the_service_lets_the_running_handler_finish(
    clean_js: JetStreamContext, nats_server_process
) -> None:
    """A graceful stop (SIGTERM) waits for the in-flight handler, which then acks."""
    await prepare(clean_js)
    finished: list[str] = []

    async def handle(event: UploadFinished) -> None:
        await asyncio.sleep(1.5)
        finished.append(event.pid)

    async with consuming(nats_server_process.url, handle):
        await publish_event(
            clean_js, subjects.UPLOAD_FINISHED, upload_finished("p/inflight"), msg_id="f"
        )
        await asyncio.sleep(0.5)  # the handler is now running; leaving the block stops the broker
    info = await clean_js.consumer_info(SPEC.stream, SPEC.durable)

    assert finished == ["p/inflight"]
    assert info.num_ack_pending == 0
    assert info.num_pending == 0
