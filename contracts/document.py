"""Renders the contracts as Markdown (`docs/subjects.md`); a test keeps the file current."""

import inspect

from contracts import streams, subjects
from contracts.events import EVENT_OF_SUBJECT, DeadLetter


def subject_docs() -> list[tuple[str, str, str]]:
    """(constant, subject, docstring) for every subject constant, in source order."""
    source = inspect.getsource(subjects)
    rows = []
    for name, value in vars(subjects).items():
        if not name.isupper() or not isinstance(value, str):
            continue
        marker = f'{name}: Final = "{value}"\n"""'
        start = source.find(marker)
        doc = ""
        if start >= 0:
            begin = start + len(marker)
            doc = " ".join(source[begin : source.index('"""', begin)].split())
        rows.append((name, value, doc))
    return rows


def _seconds(delta: object) -> str:
    return f"{int(delta.total_seconds())} s"  # type: ignore[attr-defined]


def render_subjects_markdown() -> str:
    lines = [
        "# Subjects, streams and consumers",
        "",
        "Generated from `contracts/` by `archiver subjects-doc --output docs/subjects.md`;",
        "`tests/contracts/test_document.py` fails when this file is stale.",
        "",
        "## Subjects",
        "",
        "| constant | subject | event model | meaning |",
        "| --- | --- | --- | --- |",
    ]
    for name, value, doc in subject_docs():
        model = EVENT_OF_SUBJECT.get(value)
        model_name = f"`{model.__name__}`" if model else ""
        if value == subjects.DEAD_LETTER_PREFIX:
            value, model_name = f"{value}.<service>", f"`{DeadLetter.__name__}`"
        lines.append(f"| `{name}` | `{value}` | {model_name} | {doc} |")
    lines += [
        "",
        "## Streams",
        "",
        "All streams use LIMITS retention and file storage: acked messages stay, so the",
        "log can be replayed from a sequence or a time after an incident.",
        "",
        "| stream | subjects | max age | max bytes | duplicate window | purpose |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for stream in streams.STREAMS:
        subject_list = ", ".join(f"`{s}`" for s in stream.subjects)
        lines.append(
            f"| `{stream.name}` | {subject_list} | {stream.max_age.days} d "
            f"| {stream.max_bytes // 1024**3} GiB | {_seconds(stream.duplicate_window)} "
            f"| {stream.description} |"
        )
    lines += [
        "",
        "## Durable consumers",
        "",
        "Pull consumers, explicit acks. A failing handler is nak-ed with the delays",
        "below; a vanished one (process killed) is redelivered after the ack wait.",
        "",
        "| durable | service | stream | filter | ack wait | max deliver | nak delays | purpose |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for c in streams.CONSUMERS:
        delays = ", ".join(str(int(d.total_seconds())) for d in c.nak_delays)
        lines.append(
            f"| `{c.durable}` | {c.service} | `{c.stream}` | `{c.filter_subject}` "
            f"| {_seconds(c.ack_wait)} | {c.max_deliver} | {delays} s | {c.description} |"
        )
    return "\n".join(lines) + "\n"
