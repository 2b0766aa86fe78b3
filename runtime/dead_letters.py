"""Dead letters as people read them: the DEADLETTERS stream's two kinds of message, one shape.

A dead letter is either a service's `DeadLetter` event (`deadletter.<service>`) or
the server's max-deliveries advisory, which DEADLETTERS captures. Both point at
the original message by stream and sequence. `archiver dlq` and the gateway's
status page list them with `list_letters`.
"""

from dataclasses import asdict, dataclass
from datetime import datetime

from nats.js import JetStreamContext
from pydantic import ValidationError

from contracts import streams, subjects
from contracts.events import DeadLetter
from runtime.stream_reading import StoredMessage, get_stored, read_stream

ADVISORY_REASON = "max deliveries reached (server advisory)"
_SERVICE_OF_CONSUMER = {c.durable: c.service for c in streams.CONSUMERS}


@dataclass(frozen=True)
class Letter:
    """One dead letter, whichever kind, as the tools show it."""

    seq: int
    """Its sequence in the DEADLETTERS stream: the N of `dlq show N`."""
    time: datetime | None
    service: str
    consumer: str
    stream: str
    stream_seq: int
    deliveries: int
    reason: str
    detail: str | None = None
    subject: str | None = None
    """The original's subject (an advisory does not say it: looked up in the stream)."""
    advisory: bool = False


def letter_from(message: StoredMessage) -> Letter:
    """Read a DEADLETTERS message; one that cannot be read becomes a letter saying so."""
    body = message.json()
    if message.subject.startswith(subjects.MAX_DELIVERIES_ADVISORY_PREFIX):
        if isinstance(body, dict):
            consumer = str(body.get("consumer", "?"))
            return Letter(
                seq=message.seq,
                time=message.time,
                service=_SERVICE_OF_CONSUMER.get(consumer, "?"),
                consumer=consumer,
                stream=str(body.get("stream", "?")),
                stream_seq=int(body.get("stream_seq", 0)),
                deliveries=int(body.get("deliveries", 0)),
                reason=ADVISORY_REASON,
                advisory=True,
            )
    else:
        try:
            letter = DeadLetter.model_validate_json(message.data)
        except ValidationError:
            pass
        else:
            return Letter(
                seq=message.seq,
                time=letter.occurred_at,
                service=letter.service,
                consumer=letter.consumer,
                stream=letter.stream,
                stream_seq=letter.stream_seq,
                deliveries=letter.deliveries,
                reason=letter.reason,
                detail=letter.detail,
                subject=letter.subject,
            )
    return Letter(
        seq=message.seq,
        time=message.time,
        service="?",
        consumer="?",
        stream="?",
        stream_seq=0,
        deliveries=0,
        reason=f"unreadable dead letter on {message.subject}",
        detail=message.data[:500].decode(errors="replace"),
    )


async def list_letters(js: JetStreamContext, *, originals: bool = True) -> list[Letter]:
    """Every dead letter, oldest first; with `originals`, advisories get their original's
    subject looked up (that reads the original's stream: the operator may, the gateway not)."""
    letters = []
    async for message in read_stream(js, streams.DEAD_LETTERS.name):
        letter = letter_from(message)
        if originals and letter.advisory and letter.stream_seq:
            original = await get_stored(js, letter.stream, letter.stream_seq)
            if original is not None:
                letter = Letter(**{**asdict(letter), "subject": original.subject})
        letters.append(letter)
    return letters
