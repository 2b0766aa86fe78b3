"""`archiver replay`: re-drive selected events from the ARCHIVER log into the chain.

The log is read with an ephemeral consumer (from the start, or from `--since`),
each event whose body names the job or dataset (and, optionally, has the
subject) is selected, and re-published to its subject under a new message id
(`replay:<run id>:<seq>`) with `Archiver-Copy-Of: ARCHIVER:<seq>`. Handlers are
idempotent: replaying completed work changes nothing, replaying interrupted work
finishes it.

Each original event is selected once: copies made by earlier replays (or by
`dlq retry`) are recognised by that header (or, older ones, by their message
id) and skipped while their original is still in the log; once the original
has aged out, its oldest copy stands in for it, once.
"""

import asyncio
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

from nats.js import JetStreamContext
from rich.console import Console
from rich.table import Table

from archiver.operator_bus import (
    StoredMessage,
    connected,
    get_stored,
    origin_of,
    read_stream,
    republish_headers,
)
from contracts import streams
from runtime.settings import NatsSettings


@dataclass(frozen=True)
class ReplaySelection:
    """Which events to replay; every criterion given must hold."""

    job_id: str | None = None
    pid: str | None = None
    subject: str | None = None
    """A subject, NATS wildcards (`*`, `>`) allowed."""
    since: datetime | None = None
    """Stored at or after this time (aware)."""

    @property
    def narrowed(self) -> bool:
        """A replay must name a job, a dataset or a time: never the whole log by accident."""
        return bool(self.job_id or self.pid or self.since)


def subject_matches(pattern: str, subject: str) -> bool:
    """NATS subject matching: `*` is one token, a final `>` one or more."""
    wanted, tokens = pattern.split("."), subject.split(".")
    for i, part in enumerate(wanted):
        if part == ">":
            return len(tokens) > i
        if i >= len(tokens) or part not in ("*", tokens[i]):
            return False
    return len(tokens) == len(wanted)


def _pids(body: dict[str, object]) -> set[str]:
    found = set()
    if isinstance(body.get("pid"), str):
        found.add(body["pid"])
    datasets = body.get("datasets")
    if isinstance(datasets, list):
        found |= {
            d["pid"] for d in datasets if isinstance(d, dict) and isinstance(d.get("pid"), str)
        }
    return found  # type: ignore[return-value]


def is_selected(message: StoredMessage, selection: ReplaySelection) -> bool:
    """Whether `message` is one to replay (a body that is not a JSON object never is)."""
    body = message.json()
    if not isinstance(body, dict):
        return False
    if selection.subject and not subject_matches(selection.subject, message.subject):
        return False
    if selection.since and (message.time is None or message.time < selection.since):
        return False
    if selection.job_id and body.get("job_id") != selection.job_id:
        return False
    return not (selection.pid and selection.pid not in _pids(body))


def select_events(
    messages: Iterable[StoredMessage],
    selection: ReplaySelection,
    original_exists: Callable[[tuple[str, int]], bool] = lambda _origin: True,
) -> list[StoredMessage]:
    """The messages to replay, in log order: each original once, never a copy of one.

    A copy whose original was not read (outside `--since`, or aged out) is taken, once
    per original, only if `original_exists` says the original is gone from the log.
    """
    read = list(messages)
    originals = {(m.stream, m.seq) for m in read if origin_of(m) is None}
    chosen, stand_ins = [], set()
    for message in read:
        if not is_selected(message, selection):
            continue
        origin = origin_of(message)
        if origin is not None:
            if origin in originals or origin in stand_ins or original_exists(origin):
                continue
            stand_ins.add(origin)
        chosen.append(message)
    return chosen


def replay_msg_id(run_id: str, message: StoredMessage) -> str:
    return f"replay:{run_id}:{message.seq}"


@dataclass(frozen=True)
class Replayed:
    original: StoredMessage
    published_seq: int | None
    """Where the copy landed; None on a dry run."""
    duplicate: bool = False


async def replay(
    js: JetStreamContext, selection: ReplaySelection, *, run_id: str, dry_run: bool
) -> list[Replayed]:
    """Select from the ARCHIVER log, then (unless a dry run) re-publish each selected event."""
    stream = streams.ARCHIVER.name
    read = [
        m
        async for m in read_stream(
            js,
            stream,
            subject=_server_filter(selection.subject),
            since=selection.since,
        )
        if is_selected(m, selection)
    ]
    gone = set()
    for origin in {o for m in read if (o := origin_of(m)) is not None}:
        if await get_stored(js, origin[0], origin[1]) is None:
            gone.add(origin)
    selected = select_events(read, selection, lambda origin: origin not in gone)
    if dry_run:
        return [Replayed(m, None) for m in selected]
    done = []
    for message in selected:
        ack = await js.publish(
            message.subject,
            message.data,
            headers=republish_headers(message, replay_msg_id(run_id, message)),
            stream=stream,
        )
        done.append(Replayed(message, ack.seq, duplicate=bool(ack.duplicate)))
    return done


def _server_filter(subject: str | None) -> str | None:
    """Let the server filter when the subject lies inside the stream's subjects."""
    if subject is None:
        return None
    owned = any(subject_matches(s, subject) for s in streams.ARCHIVER.subjects)
    return subject if owned else None


def render_replayed(
    console: Console, replayed: list[Replayed], *, run_id: str, dry_run: bool
) -> None:
    if not replayed:
        console.print("No events match.")
        return
    verb = "Would replay" if dry_run else f"Replayed (run {run_id})"
    table = Table(title=f"{verb}: {len(replayed)} event(s)")
    for name in ("seq", "stored (UTC)", "subject", "job", "pid", "new seq"):
        table.add_column(name, overflow="fold")
    for item in replayed:
        body = item.original.json()
        fields = body if isinstance(body, dict) else {}
        when = item.original.time.strftime("%Y-%m-%d %H:%M:%S") if item.original.time else "?"
        if dry_run:
            new = "dry run"
        else:
            new = f"{item.published_seq}{' (duplicate)' if item.duplicate else ''}"
        table.add_row(
            str(item.original.seq),
            when,
            item.original.subject,
            str(fields.get("job_id") or ""),
            ", ".join(sorted(_pids(fields))),
            new,
        )
    console.print(table)


def replay_command(
    bus: NatsSettings, selection: ReplaySelection, *, dry_run: bool, console: Console
) -> int:
    if not selection.narrowed:
        console.print("Name what to replay: --job, --dataset or --since.")
        return 2
    run_id = uuid.uuid4().hex[:12]

    async def run() -> list[Replayed]:
        async with connected(bus) as client:
            return await replay(client.jetstream(), selection, run_id=run_id, dry_run=dry_run)

    render_replayed(console, asyncio.run(run()), run_id=run_id, dry_run=dry_run)
    return 0
