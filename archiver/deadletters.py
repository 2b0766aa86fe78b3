"""`archiver dlq`: list, show, retry and drop dead letters.

A dead letter (read by `runtime.dead_letters`) is a message in the DEADLETTERS
stream: either a service's `DeadLetter` event (`deadletter.<service>`) or the
server's max-deliveries advisory, which DEADLETTERS captures. Both point at the original message by
stream and sequence; the original stays in its (LIMITS) stream until it ages
out, so it can be shown and re-published. A retry gives the original body and
headers a new `Nats-Msg-Id` (`retry:<stream>:<seq>:<letter>`): the original id
would be deduplicated inside the duplicate window, while a repeat of the same
retry (say the letter could not be removed) is still stored once.
"""

import asyncio
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime

from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from rich.console import Console
from rich.table import Table

from archiver.operator_bus import (
    StoredMessage,
    connected,
    get_stored,
    republish_headers,
)
from contracts import streams
from runtime.dead_letters import ADVISORY_REASON, Letter, letter_from, list_letters
from runtime.redaction import redact, redact_text
from runtime.settings import NatsSettings

__all__ = [
    "ADVISORY_REASON",
    "Letter",
    "get_letter",
    "letter_from",
    "list_letters",
    "render_letters",
]


async def get_letter(js: JetStreamContext, seq: int) -> Letter | None:
    message = await get_stored(js, streams.DEAD_LETTERS.name, seq)
    if message is None:
        return None
    letter = letter_from(message)
    if letter.advisory:
        original = await get_stored(js, letter.stream, letter.stream_seq)
        if original is not None:
            letter = Letter(**{**asdict(letter), "subject": original.subject})
    return letter


def retry_msg_id(letter: Letter) -> str:
    return f"retry:{letter.stream}:{letter.stream_seq}:{letter.seq}"


@dataclass(frozen=True)
class RetryOutcome:
    letter: Letter
    published_seq: int | None
    """Where the re-published original landed; None when it could not be retried."""
    problem: str | None = None


async def retry_letter(js: JetStreamContext, letter: Letter) -> RetryOutcome:
    """Re-publish the original to its subject, then remove the dead letter."""
    original = await get_stored(js, letter.stream, letter.stream_seq)
    if original is None:
        problem = (
            f"the original {letter.stream} #{letter.stream_seq} is no longer in its stream "
            "(aged out or deleted); the dead letter is kept"
        )
        return RetryOutcome(letter, None, problem)
    ack = await js.publish(
        original.subject,
        original.data,
        headers=republish_headers(original, retry_msg_id(letter)),
        stream=letter.stream,
    )
    await delete_letter(js, letter.seq)
    return RetryOutcome(letter, ack.seq)


async def delete_letter(js: JetStreamContext, seq: int) -> bool:
    """Remove one dead letter; False when it was already gone."""
    try:
        return await js.delete_msg(streams.DEAD_LETTERS.name, seq)
    except NotFoundError:
        return False


# --- rendering ---------------------------------------------------------------


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "?"


def render_letters(console: Console, letters: list[Letter]) -> None:
    if not letters:
        console.print("No dead letters.")
        return
    table = Table(title=f"Dead letters ({len(letters)})")
    for name in ("N", "time (UTC)", "service", "consumer", "original", "deliveries", "reason"):
        table.add_column(name, overflow="fold")
    for letter in letters:
        table.add_row(
            str(letter.seq),
            _when(letter.time),
            letter.service,
            letter.consumer,
            f"{letter.subject or '?'} ({letter.stream} #{letter.stream_seq})",
            str(letter.deliveries),
            redact_text(letter.reason),
        )
    console.print(table)


def _pretty(message: StoredMessage) -> str:
    body = message.json()
    if body is None:
        return redact_text(message.data.decode(errors="replace"))
    return json.dumps(redact(body), indent=2, sort_keys=True)


def letters_json(letters: list[Letter]) -> str:
    """`dlq list --json`: every letter's fields (times ISO 8601, reason and detail redacted)."""
    return json.dumps([_fields(letter) for letter in letters], indent=2)


def _fields(letter: Letter) -> dict[str, object]:
    fields = {
        k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in asdict(letter).items()
    }
    return redact(fields)  # type: ignore[no-any-return]


def render_letter(console: Console, letter: Letter, original: StoredMessage | None) -> None:
    console.print(f"[bold]Dead letter #{letter.seq}[/bold]")
    console.print_json(json.dumps(_fields(letter)))
    if original is None:
        console.print(
            f"[bold red]The original {letter.stream} #{letter.stream_seq} is no longer in its "
            "stream (aged out or deleted): it cannot be retried.[/bold red]"
        )
        return
    console.print(
        f"[bold]Original {original.stream} #{original.seq}[/bold] "
        f"subject={original.subject} stored={_when(original.time)}"
    )
    headers = json.dumps(redact(dict(original.headers)), sort_keys=True)
    console.print(f"headers: {headers}", markup=False, highlight=False)
    console.print(_pretty(original), markup=False, highlight=False)


# --- commands ------------------------------------------------------------------


def list_command(bus: NatsSettings, console: Console, *, as_json: bool = False) -> int:
    async def run() -> int:
        async with connected(bus) as client:
            letters = await list_letters(client.jetstream())
        if as_json:
            console.out(letters_json(letters), highlight=False)
        else:
            render_letters(console, letters)
        return 0

    return asyncio.run(run())


def show_command(bus: NatsSettings, seq: int, console: Console, *, as_json: bool = False) -> int:
    async def run() -> int:
        async with connected(bus) as client:
            js = client.jetstream()
            letter = await get_letter(js, seq)
            if letter is None:
                console.print(f"No dead letter #{seq}.")
                return 1
            original = await get_stored(js, letter.stream, letter.stream_seq)
        if as_json:
            console.out(letter_json(letter, original), highlight=False)
        else:
            render_letter(console, letter, original)
        return 0

    return asyncio.run(run())


def letter_json(letter: Letter, original: StoredMessage | None) -> str:
    """`dlq show --json`: the letter's fields and the original (null once it aged out)."""
    shown: dict[str, object] = {"letter": _fields(letter), "original": None}
    if original is not None:
        body = original.json()
        shown["original"] = {
            "stream": original.stream,
            "seq": original.seq,
            "subject": original.subject,
            "stored": original.time.isoformat() if original.time else None,
            "headers": redact(dict(original.headers)),
            "body": redact(body)
            if body is not None
            else redact_text(original.data.decode(errors="replace")),
        }
    return json.dumps(shown, indent=2)


def retry_command(bus: NatsSettings, seq: int | None, console: Console) -> int:
    """Retry letter `seq`, or every letter when `seq` is None; 1 if any could not be retried."""

    async def run() -> int:
        async with connected(bus) as client:
            js = client.jetstream()
            if seq is None:
                letters = await list_letters(js)
            else:
                letter = await get_letter(js, seq)
                if letter is None:
                    console.print(f"No dead letter #{seq}.")
                    return 1
                letters = [letter]
            failed = 0
            retried: dict[tuple[str, int], int] = {}
            for letter in letters:
                first = retried.get((letter.stream, letter.stream_seq))
                if first is not None:
                    # An advisory and a service's letter about the same original: retry it once.
                    await delete_letter(js, letter.seq)
                    console.print(f"#{letter.seq}: same original as #{first}; dead letter removed")
                    continue
                outcome = await retry_letter(js, letter)
                if outcome.published_seq is None:
                    failed += 1
                    console.print(f"#{letter.seq}: not retried: {outcome.problem}")
                else:
                    retried[(letter.stream, letter.stream_seq)] = letter.seq
                    console.print(
                        f"#{letter.seq}: re-published {letter.subject or '?'} as "
                        f"{letter.stream} #{outcome.published_seq}; dead letter removed"
                    )
            if not letters:
                console.print("No dead letters.")
            return 1 if failed else 0

    return asyncio.run(run())


def drop_command(
    bus: NatsSettings, seq: int, console: Console, *, confirm: Callable[[str], bool]
) -> int:
    """Remove letter `seq` once `confirm(question)` says yes."""

    async def find() -> Letter | None:
        async with connected(bus) as client:
            return await get_letter(client.jetstream(), seq)

    async def drop() -> bool:
        async with connected(bus) as client:
            return await delete_letter(client.jetstream(), seq)

    letter = asyncio.run(find())
    if letter is None:
        console.print(f"No dead letter #{seq}.")
        return 1
    question = (
        f"Drop dead letter #{seq} ({letter.subject or '?'} {letter.stream} #{letter.stream_seq}: "
        f"{letter.reason})?"
    )
    if not confirm(question):
        console.print("Kept.")
        return 1
    asyncio.run(drop())
    console.print(f"Dead letter #{seq} dropped.")
    return 0
