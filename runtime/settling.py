"""How a handled message is settled: ack, nak with a delay, or dead-letter and terminate.

Every consumer (bound by `runtime.service_bus.Bus.consumes`) goes through
`Settler.settle`, so no service can drop a message by accident: a handler that
raises is redelivered after the consumer's backoff,
never terminated, until its last allowed delivery; then (or at once, for poison
and permanent errors) the message is published to the service's dead-letter
subject with the reason and terminated. Long handlers are kept alive by a
heartbeat (`in_progress`) well inside the ack wait.
"""

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TypeVar

import structlog
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from pydantic import BaseModel, ValidationError

from contracts import subjects
from contracts.events import DeadLetter
from contracts.streams import ConsumerSpec
from runtime.metrics import ConsumerCounters
from runtime.publishing import CORRELATION_HEADER, publish_event
from runtime.redaction import redact_text

log = structlog.get_logger(__name__)

EventT = TypeVar("EventT", bound=BaseModel)

SHUTDOWN_NAK_DELAY_S = 1.0


class PermanentError(Exception):
    """Retrying cannot fix this message: dead-letter it with this message as the reason."""

    def __init__(self, reason: str, detail: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


class Settler:
    """Runs one consumer's handler on each message, settles the message, and counts the outcome
    (`runtime.metrics`: handled, retried, dead-lettered, handler duration)."""

    def __init__(
        self,
        spec: ConsumerSpec,
        js: JetStreamContext,
        *,
        heartbeat_s: float | None = None,
    ) -> None:
        self.spec = spec
        self.js = js
        # A third of the ack wait leaves two missed beats before redelivery.
        self.heartbeat_s = heartbeat_s or spec.ack_wait.total_seconds() / 3
        self.counters = ConsumerCounters(spec.service, spec.durable)

    async def settle(
        self,
        msg: Msg,
        model: type[EventT],
        handle: Callable[[EventT], Awaitable[None]],
    ) -> None:
        meta = msg.metadata
        delivered = meta.num_delivered
        seq = meta.sequence.stream
        correlation_id = (msg.headers or {}).get(CORRELATION_HEADER)
        with structlog.contextvars.bound_contextvars(
            consumer=self.spec.durable, subject=msg.subject, seq=seq, correlation_id=correlation_id
        ):
            try:
                event = model.model_validate_json(msg.data)
            except ValidationError as exc:
                await self._dead_letter(
                    msg, "message does not match its contract", _summary(exc), cause="invalid"
                )
                return
            heartbeat = asyncio.create_task(self._heartbeat(msg))
            try:
                await self._timed(handle, event)
            except PermanentError as exc:
                await self._dead_letter(msg, exc.reason, exc.detail, cause="permanent")
                return
            except asyncio.CancelledError:
                # Shutdown: hand the message back quickly rather than waiting out ack_wait.
                with contextlib.suppress(Exception):
                    await msg.nak(delay=SHUTDOWN_NAK_DELAY_S)
                raise
            except Exception as exc:  # the boundary: any other failure is retried later
                if delivered >= self.spec.max_deliver:
                    await self._dead_letter(
                        msg,
                        f"gave up after {delivered} deliveries",
                        f"{type(exc).__name__}: {exc}",
                        cause="exhausted",
                    )
                    return
                delay = self.spec.nak_delay(delivered).total_seconds()
                log.warning(
                    "message.retry_later",
                    delivered=delivered,
                    delay_s=delay,
                    error=f"{type(exc).__name__}: {exc}",
                )
                await msg.nak(delay=delay)
                self.counters.retried()
                return
            finally:
                heartbeat.cancel()
            await msg.ack()
            self.counters.handled()

    async def _timed(self, handle: Callable[[EventT], Awaitable[None]], event: EventT) -> None:
        started = time.monotonic()
        try:
            await handle(event)
        finally:
            self.counters.handler_ran(time.monotonic() - started)

    async def _heartbeat(self, msg: Msg) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_s)
            await msg.in_progress()

    async def _dead_letter(self, msg: Msg, reason: str, detail: str | None, *, cause: str) -> None:
        meta = msg.metadata
        letter = DeadLetter(
            occurred_at=datetime.now(UTC),
            service=self.spec.service,
            consumer=self.spec.durable,
            subject=msg.subject,
            stream=meta.stream,
            stream_seq=meta.sequence.stream,
            deliveries=meta.num_delivered,
            reason=redact_text(reason),
            detail=redact_text(detail[:4000]) if detail else None,
        )
        await publish_event(
            self.js,
            subjects.dead_letter(self.spec.service),
            letter,
            msg_id=f"deadletter:{self.spec.durable}:{meta.sequence.stream}",
        )
        log.error("message.dead_lettered", reason=reason, detail=letter.detail)
        await msg.term()
        self.counters.dead_lettered(cause)


def _summary(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or '<body>'}: {err['msg']}"
        for err in exc.errors()[:10]
    )
