"""`archiver dlq` over a real nats-server: dead letters listed, shown, retried and dropped."""

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from io import StringIO

import nats.errors
from click.testing import Result
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig
from rich.console import Console
from typer.testing import CliRunner

from archiver.cli import app
from archiver.deadletters import ADVISORY_REASON, Letter, letter_from, list_letters, render_letters
from archiver.operator_bus import StoredMessage
from contracts import streams, subjects
from contracts.events import DeadLetter, UploadFinished
from runtime.provisioning import consumer_config, provision
from runtime.publishing import publish_event
from runtime.service_bus import Bus
from runtime.settling import PermanentError
from tests import inprocess_consumer
from tests.conftest import operator_env
from tests.polling import eventually

SPEC = replace(
    streams.DATABLOCKER_UPLOAD_FINISHED,
    durable="dlqtest--upload_finished",
    service="dlqtest",
    max_deliver=3,
    backoff=(),
    nak_delays=(timedelta(milliseconds=200),),
)
runner = CliRunner()


def upload_finished(pid: str) -> UploadFinished:
    return UploadFinished(
        occurred_at=datetime(2025, 3, 1, 12, 0, tzinfo=UTC),
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


async def letter_count(js: JetStreamContext) -> int:
    return (await js.stream_info("DEADLETTERS")).state.messages


async def cli(*args: str, user_input: str | None = None) -> Result:
    """`archiver ...` as an operator runs it (in a thread: the command runs its own loop)."""
    return await asyncio.to_thread(
        runner.invoke, app, list(args), input=user_input, env={"COLUMNS": "200", **operator_env()}
    )


async def poison(js: JetStreamContext, url: str, pids: list[str]) -> None:
    """Publish `pids` to a consumer that rejects them as permanent errors, until all are letters."""
    await provision(js)
    await js.add_consumer(SPEC.stream, consumer_config(SPEC))

    async def reject(event: UploadFinished) -> None:
        raise PermanentError(f"Dataset {event.pid} is unknown to SciCat", "404 Not Found")

    async with consuming(url, reject):
        for pid in pids:
            await publish_event(
                js,
                subjects.UPLOAD_FINISHED,
                upload_finished(pid),
                msg_id=f"upload.finished:{pid}",
                correlation_id=f"corr-{pid}",
            )
        await eventually(
            lambda: letter_count(js),
            f"{len(pids)} dead letters",
            done=lambda count: count == len(pids),
            timeout_s=5.0,
            interval_s=0.02,
        )


async def test_a_poison_message_is_listed_shown_and_retried_into_a_fixed_consumer(
    clean_js: JetStreamContext, nats_server_process
) -> None:
    """retry re-publishes the original (new msg id, same headers) and removes the letter."""
    url = nats_server_process.url
    await poison(clean_js, url, ["p/poison"])

    letters = await list_letters(clean_js)
    listed = await cli("dlq", "list", "--nats-url", url)
    as_json = await cli("dlq", "list", "--json", "--nats-url", url)
    shown = await cli("dlq", "show", "1", "--nats-url", url)
    shown_json = await cli("dlq", "show", "1", "--json", "--nats-url", url)

    assert [(d.seq, d.service, d.consumer, d.subject, d.stream, d.stream_seq) for d in letters] == [
        (1, "dlqtest", "dlqtest--upload_finished", "upload.finished", "ARCHIVER", 1)
    ]
    assert letters[0].reason == "Dataset p/poison is unknown to SciCat"
    assert listed.exit_code == 0
    assert "upload.finished (ARCHIVER #1)" in listed.output
    assert "Dataset p/poison is unknown to SciCat" in listed.output
    assert as_json.exit_code == 0, as_json.output
    assert [
        (d["seq"], d["service"], d["subject"], d["stream_seq"], d["reason"])
        for d in json.loads(as_json.output)
    ] == [(1, "dlqtest", "upload.finished", 1, "Dataset p/poison is unknown to SciCat")]
    assert shown.exit_code == 0
    assert "Dead letter #1" in shown.output
    assert "404 Not Found" in shown.output
    assert '"pid": "p/poison"' in shown.output
    assert "corr-p/poison" in shown.output
    assert shown_json.exit_code == 0, shown_json.output
    shown_fields = json.loads(shown_json.output)
    assert shown_fields["letter"]["reason"] == "Dataset p/poison is unknown to SciCat"
    assert shown_fields["original"]["seq"] == 1
    assert shown_fields["original"]["body"]["pid"] == "p/poison"

    handled: list[str] = []

    async def accept(event: UploadFinished) -> None:
        handled.append(event.pid)

    async with consuming(url, accept):
        retried = await cli("dlq", "retry", "1", "--nats-url", url)
        await eventually(
            lambda: handled,
            "the retried p/poison handled",
            done=lambda pids: pids == ["p/poison"],
            timeout_s=5.0,
            interval_s=0.02,
        )
    republished = await clean_js.get_msg("ARCHIVER", 2)

    assert retried.exit_code == 0, retried.output
    assert "re-published upload.finished as ARCHIVER #2" in retried.output
    assert republished.subject == "upload.finished"
    assert json.loads(republished.data or b"")["pid"] == "p/poison"
    assert republished.headers is not None
    assert republished.headers["Nats-Msg-Id"] == "retry:ARCHIVER:1:1"
    assert republished.headers["Archiver-Copy-Of"] == "ARCHIVER:1"  # replay skips it
    assert republished.headers["X-Correlation-ID"] == "corr-p/poison"
    assert await list_letters(clean_js) == []


async def test_drop_asks_first_and_retry_all_re_publishes_the_rest(
    clean_js: JetStreamContext, nats_server_process
) -> None:
    """drop keeps the letter when the operator says no, removes it with --yes; --all retries all."""
    url = nats_server_process.url
    await poison(clean_js, url, ["p/a", "p/b", "p/c"])

    declined = await cli("dlq", "drop", "2", "--nats-url", url, user_input="n\n")
    after_decline = [d.seq for d in await list_letters(clean_js)]
    dropped = await cli("dlq", "drop", "2", "--yes", "--nats-url", url)
    after_drop = [d.seq for d in await list_letters(clean_js)]
    retried = await cli("dlq", "retry", "--all", "--nats-url", url)
    info = await clean_js.stream_info("ARCHIVER")
    copies = [await clean_js.get_msg("ARCHIVER", seq) for seq in (4, 5)]

    assert declined.exit_code == 1
    assert after_decline == [1, 2, 3]
    assert dropped.exit_code == 0
    assert after_drop == [1, 3]
    assert retried.exit_code == 0, retried.output
    assert await list_letters(clean_js) == []
    assert info.state.messages == 5
    assert [json.loads(c.data or b"")["pid"] for c in copies] == ["p/a", "p/c"]
    assert [(c.headers or {})["Nats-Msg-Id"] for c in copies] == [
        "retry:ARCHIVER:1:1",
        "retry:ARCHIVER:3:3",
    ]


async def test_a_letter_whose_original_aged_out_is_reported_and_kept(
    clean_js: JetStreamContext, nats_server_process
) -> None:
    """show says the original is gone; retry fails with exit code 1 and keeps the letter."""
    url = nats_server_process.url
    await poison(clean_js, url, ["p/old"])
    await clean_js.delete_msg("ARCHIVER", 1)

    shown = await cli("dlq", "show", "1", "--nats-url", url)
    retried = await cli("dlq", "retry", "1", "--nats-url", url)
    unknown = await cli("dlq", "show", "99", "--nats-url", url)

    assert shown.exit_code == 0
    assert "no longer in its stream" in shown.output
    assert retried.exit_code == 1
    assert "not retried" in retried.output
    assert [d.seq for d in await list_letters(clean_js)] == [1]
    assert unknown.exit_code == 1
    assert "No dead letter #99" in unknown.output


async def test_a_max_deliveries_advisory_is_listed_as_a_dead_letter(
    clean_js: JetStreamContext,
) -> None:
    """The server's advisory, captured in DEADLETTERS, shows with its original's subject."""
    await provision(clean_js)
    await clean_js.add_consumer(
        "ARCHIVER",
        ConsumerConfig(
            durable_name="advisorytest",
            filter_subject=subjects.UPLOAD_FINISHED,
            ack_policy=AckPolicy.EXPLICIT,
            max_deliver=2,
        ),
    )
    sub = await clean_js.pull_subscribe_bind("advisorytest", stream="ARCHIVER")
    await publish_event(
        clean_js, subjects.UPLOAD_FINISHED, upload_finished("p/slow"), msg_id="slow"
    )
    for _ in range(2):
        (msg,) = await sub.fetch(1, timeout=2)
        await msg.nak()
    # The server decides "no more deliveries" (and advises) when it next tries to deliver.
    with contextlib.suppress(nats.errors.TimeoutError):
        await sub.fetch(1, timeout=0.3)
    await eventually(
        lambda: letter_count(clean_js),
        "the max-deliveries advisory as one letter",
        done=lambda count: count == 1,
        timeout_s=5.0,
        interval_s=0.02,
    )
    letters = await list_letters(clean_js)
    await sub.unsubscribe()

    assert len(letters) == 1
    assert letters[0].advisory
    assert letters[0].reason == ADVISORY_REASON
    assert (letters[0].consumer, letters[0].stream, letters[0].stream_seq) == (
        "advisorytest",
        "ARCHIVER",
        1,
    )
    assert letters[0].deliveries == 2
    assert letters[0].subject == "upload.finished"


def test_an_advisory_body_is_read_into_a_letter() -> None:
    """The advisory's JSON gives consumer, stream, sequence and deliveries; service by durable."""
    body = {
        "type": "io.nats.jetstream.advisory.v1.max_deliver",
        "stream": "ARCHIVER",
        "consumer": "verifier--lts_moved",
        "stream_seq": 42,
        "deliveries": 12,
    }
    message = StoredMessage(
        stream="DEADLETTERS",
        seq=7,
        subject="$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.ARCHIVER.verifier--lts_moved",
        data=json.dumps(body).encode(),
        headers={},
        time=datetime(2025, 3, 1, 12, 0, tzinfo=UTC),
    )

    assert letter_from(message) == Letter(
        seq=7,
        time=datetime(2025, 3, 1, 12, 0, tzinfo=UTC),
        service="verifier",
        consumer="verifier--lts_moved",
        stream="ARCHIVER",
        stream_seq=42,
        deliveries=12,
        reason="max deliveries reached (server advisory)",
        advisory=True,
    )


def test_an_unreadable_dead_letter_is_listed_not_fatal() -> None:
    """Garbage on a dead-letter subject becomes a row saying so."""
    message = StoredMessage(
        stream="DEADLETTERS",
        seq=3,
        subject="deadletter.someone",
        data=b"\x00oops",
        headers={},
        time=None,
    )
    console = Console(file=StringIO(), width=200)

    letter = letter_from(message)
    render_letters(console, [letter])

    assert letter.reason == "unreadable dead letter on deadletter.someone"
    assert "unreadable dead letter on deadletter.someone" in console.file.getvalue()  # type: ignore[attr-defined]


async def test_retry_all_re_publishes_an_original_once_when_two_letters_point_at_it(
    clean_js: JetStreamContext, nats_server_process
) -> None:
    """Two letters about one original (say a letter and an advisory): one copy, both removed."""
    await provision(clean_js)
    await publish_event(clean_js, subjects.UPLOAD_FINISHED, upload_finished("p/twice"), msg_id="t")
    for service in ("svc-a", "svc-b"):
        letter = DeadLetter(
            occurred_at=datetime(2025, 3, 1, 12, 0, tzinfo=UTC),
            service=service,
            consumer=f"{service}--upload_finished",
            subject="upload.finished",
            stream="ARCHIVER",
            stream_seq=1,
            deliveries=12,
            reason="gave up after 12 deliveries",
        )
        await publish_event(
            clean_js, subjects.dead_letter(service), letter, msg_id=f"letter-{service}"
        )

    retried = await cli("dlq", "retry", "--all", "--nats-url", nats_server_process.url)

    assert retried.exit_code == 0, retried.output
    assert "#2: same original as #1; dead letter removed" in retried.output
    assert (await clean_js.stream_info("ARCHIVER")).state.messages == 2
    assert await list_letters(clean_js) == []
