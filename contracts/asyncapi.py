"""The bus as an AsyncAPI 3.0 document (`docs/asyncapi.yaml`), built from the contracts.

Every subject with an event model is a channel whose message payload is the
model's JSON schema; who sends it comes from `bus_permissions.EMITS` (MinIO
for its notifications), who receives it from the durable consumers in
`streams.CONSUMERS` (a consumer's filter may be a wildcard, `job.requested.>`).
Dead letters are one channel, `deadletter.{service}`, sent by every service.
`tests/contracts/test_asyncapi.py` fails when the committed file is stale.
"""

from importlib.metadata import version
from typing import Any

import yaml
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from contracts import bus_permissions, streams, subjects
from contracts.document import subject_docs
from contracts.events import EVENT_OF_SUBJECT, DeadLetter

_SCHEMAS = "#/components/schemas/{model}"
_DEAD_LETTER_ADDRESS = f"{subjects.DEAD_LETTER_PREFIX}.{{service}}"


def subject_matches(filter_subject: str, subject: str) -> bool:
    """NATS wildcards: `*` is one token, a final `>` one or more."""
    wanted, parts = filter_subject.split("."), subject.split(".")
    for position, part in enumerate(wanted):
        if part == ">":
            return len(parts) > position
        if position >= len(parts) or part not in ("*", parts[position]):
            return False
    return len(parts) == len(wanted)


def _channel_id(subject: str) -> str:
    return subject.replace(".", "_").replace("{service}", "service")


def _payload_schemas(models: list[type[BaseModel]]) -> dict[str, Any]:
    """Every model's JSON schema, the models they use included, under components/schemas."""
    _, top = models_json_schema([(m, "validation") for m in models], ref_template=_SCHEMAS)
    return dict(sorted(top.get("$defs", {}).items()))


def _consumer_operation(spec: streams.ConsumerSpec, channel_id: str) -> dict[str, Any]:
    delays = ", ".join(str(int(d.total_seconds())) for d in spec.nak_delays)
    return {
        "action": "receive",
        "channel": {"$ref": f"#/channels/{channel_id}"},
        "title": f"{spec.service} consumes {spec.filter_subject}",
        "summary": spec.description,
        "description": (
            f"Durable pull consumer `{spec.durable}` on stream `{spec.stream}` "
            f"(filter `{spec.filter_subject}`), explicit acks: ack wait "
            f"{int(spec.ack_wait.total_seconds())} s, at most {spec.max_deliver} deliveries, "
            f"nak delays {delays} s, then a dead letter."
        ),
        "tags": [{"name": spec.service}],
        "x-jetstream": {
            "stream": spec.stream,
            "durable": spec.durable,
            "filter_subject": spec.filter_subject,
            "ack_wait_s": int(spec.ack_wait.total_seconds()),
            "max_deliver": spec.max_deliver,
            "max_ack_pending": spec.max_ack_pending,
        },
    }


def asyncapi_document() -> dict[str, Any]:
    docs = {subject: doc for _, subject, doc in subject_docs()}
    models = sorted({*EVENT_OF_SUBJECT.values(), DeadLetter}, key=lambda m: m.__name__)
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for model in models:
        messages[model.__name__] = {
            "name": model.__name__,
            "title": model.__name__,
            "summary": (model.__doc__ or "").strip().splitlines()[0],
            "contentType": "application/json",
            "payload": {"$ref": _SCHEMAS.format(model=model.__name__)},
        }
    for subject, model in EVENT_OF_SUBJECT.items():
        channel_id = _channel_id(subject)
        channels[channel_id] = {
            "address": subject,
            "description": docs.get(subject, ""),
            "messages": {model.__name__: {"$ref": f"#/components/messages/{model.__name__}"}},
        }
        publisher = bus_permissions.publisher_of(subject)
        operations[f"{publisher}.sends.{channel_id}"] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{channel_id}"},
            "title": f"{publisher} publishes {subject}",
            "messages": [{"$ref": f"#/channels/{channel_id}/messages/{model.__name__}"}],
            "tags": [{"name": publisher}],
        }
        for spec in streams.CONSUMERS:
            if subject_matches(spec.filter_subject, subject):
                operations[f"{spec.durable}.receives.{channel_id}"] = {
                    **_consumer_operation(spec, channel_id),
                    "messages": [{"$ref": f"#/channels/{channel_id}/messages/{model.__name__}"}],
                }
    dead_letters = _channel_id(_DEAD_LETTER_ADDRESS)
    channels[dead_letters] = {
        "address": _DEAD_LETTER_ADDRESS,
        "description": docs.get(subjects.DEAD_LETTER_PREFIX, ""),
        "parameters": {
            "service": {
                "enum": sorted(bus_permissions.EMITS),
                "description": "The service that gave up on the message.",
            }
        },
        "messages": {"DeadLetter": {"$ref": "#/components/messages/DeadLetter"}},
    }
    operations[f"services.send.{dead_letters}"] = {
        "action": "send",
        "channel": {"$ref": f"#/channels/{dead_letters}"},
        "title": "Every service publishes its dead letters",
        "description": (
            "Kept in the DEADLETTERS stream; read, replayed and removed by the operator "
            "(`archiver dlq`), not by a service."
        ),
        "messages": [{"$ref": f"#/channels/{dead_letters}/messages/DeadLetter"}],
    }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "archiver event bus",
            "version": version("archiver"),
            "description": (
                "NATS JetStream subjects of the archiver, generated from `contracts/` by "
                "`archiver asyncapi-doc --output docs/asyncapi.yaml`. Every event is JSON; "
                "a repeat of one carries the same `Nats-Msg-Id` and is dropped by the stream."
            ),
        },
        "defaultContentType": "application/json",
        "servers": {
            "nats": {
                "host": "nats-cluster:4222",
                "protocol": "nats",
                "description": (
                    "The NATS cluster (compose.yml); each service connects as its own user "
                    "with publish rights for only the subjects it sends (docs/subjects.md)."
                ),
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": _payload_schemas(models)},
    }


def render_asyncapi_yaml() -> str:
    header = "# Generated by `archiver asyncapi-doc --output docs/asyncapi.yaml`; do not edit.\n"
    body = yaml.safe_dump(asyncapi_document(), sort_keys=False, allow_unicode=True, width=100)
    return header + body
