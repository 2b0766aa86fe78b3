"""Every metric the archiver exports, defined once, and the small helpers that count.

Services never define a metric: they call the helpers below (`count_packed`,
`count_copied`, ...). The consumer counters are kept by `runtime.settling.Settler`
for every handler, the SciCat call outcomes by `runtime.scicat.client`, the
consumer lag by `runtime.monitoring` when /metrics is scraped. Names follow
Prometheus's conventions: an `archiver_` prefix, `_total` counters, `_seconds`
and `_bytes` units.

One registry per process (`REGISTRY`), served on each service's monitoring port
(`runtime.monitoring`). Services run one per process, so a process's series are
its service's; the `service` label keeps them apart where tests run several in
one process.
"""

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)

# `_created` series double every counter and no panel reads them.
disable_created_metrics()

REGISTRY = CollectorRegistry()
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)
GCCollector(registry=REGISTRY)

CONTENT_TYPE = CONTENT_TYPE_LATEST

# A handler runs from milliseconds (a status update) to hours (packing a large dataset).
_HANDLER_BUCKETS_S = (0.005, 0.025, 0.1, 0.5, 1, 2.5, 10, 30, 60, 300, 900, 3600, 4 * 3600)
# Recalls from tape and cold-storage restores take seconds to many hours.
_WAIT_BUCKETS_S = (1, 10, 60, 300, 900, 1800, 3600, 2 * 3600, 4 * 3600, 8 * 3600, 24 * 3600)

# -- consumers (runtime.settling) ---------------------------------------------------------

MESSAGES_HANDLED = Counter(
    "archiver_messages_handled_total",
    "Messages a consumer's handler completed (acked).",
    ["service", "consumer"],
    registry=REGISTRY,
)
MESSAGES_RETRIED = Counter(
    "archiver_messages_retried_total",
    "Messages handed back for a later delivery (nak with a delay) after the handler failed.",
    ["service", "consumer"],
    registry=REGISTRY,
)
MESSAGES_DEAD_LETTERED = Counter(
    "archiver_messages_dead_lettered_total",
    "Messages set aside on the dead-letter subject and terminated; cause: invalid (does not "
    "match its contract), permanent (retrying cannot help), exhausted (too many deliveries).",
    ["service", "consumer", "cause"],
    registry=REGISTRY,
)
HANDLER_DURATION = Histogram(
    "archiver_handler_duration_seconds",
    "Time a consumer's handler ran on one message, whatever its outcome.",
    ["service", "consumer"],
    buckets=_HANDLER_BUCKETS_S,
    registry=REGISTRY,
)
CONSUMER_PENDING = Gauge(
    "archiver_consumer_pending_messages",
    "Messages in the stream not yet delivered to the durable consumer (JetStream num_pending).",
    ["service", "stream", "consumer"],
    registry=REGISTRY,
)
CONSUMER_ACK_PENDING = Gauge(
    "archiver_consumer_ack_pending_messages",
    "Messages delivered to the durable consumer and not yet acked (JetStream num_ack_pending).",
    ["service", "stream", "consumer"],
    registry=REGISTRY,
)

# -- bytes moved -------------------------------------------------------------------------

BYTES_PACKED = Counter(
    "archiver_packed_bytes_total",
    "Bytes of tar datablocks the datablocker wrote to the archival bucket.",
    registry=REGISTRY,
)
BYTES_COPIED = Counter(
    "archiver_copied_bytes_total",
    "Bytes of datablocks the ltsmover copied from the archival bucket to LTS.",
    registry=REGISTRY,
)
BYTES_RETRIEVED = Counter(
    "archiver_retrieved_bytes_total",
    "Bytes of datablocks the ltsmover copied from LTS to the retrieval bucket.",
    registry=REGISTRY,
)
BYTES_VERIFIED = Counter(
    "archiver_verified_bytes_total",
    "Bytes the verifier re-read and found matching every checksum (job_type: archive reads "
    "LTS, retrieve reads the retrieval bucket).",
    ["job_type"],
    registry=REGISTRY,
)
VERIFICATIONS = Counter(
    "archiver_verifications_total",
    "Verdicts on copies, by outcome (ok, failed).",
    ["job_type", "outcome"],
    registry=REGISTRY,
)

# -- datasets and jobs --------------------------------------------------------------------

DATASETS_PACKED = Counter(
    "archiver_packing_outcomes_total",
    "Finished uploads the datablocker handled, by outcome (created, failed_user, "
    "failed_system, already_archived).",
    ["outcome"],
    registry=REGISTRY,
)
DATASETS_FINISHED = Counter(
    "archiver_datasets_finished_total",
    "Datasets of archive and retrieve jobs that reached a final state (succeeded, failed); "
    "error_kind says whose the failure is (user, system).",
    ["job_type", "state", "error_kind"],
    registry=REGISTRY,
)
JOBS_RECONCILED = Counter(
    "archiver_jobs_reconciled_total",
    "SciCat jobs the gateway took in by reconciliation: still jobSubmitted in SciCat after the "
    "configured age and unknown to the archiver (their url action never reached the gateway).",
    ["job_type"],
    registry=REGISTRY,
)
JOBS_FINISHED = Counter(
    "archiver_jobs_finished_total",
    "Archive and retrieve jobs that finished, by SciCat status code.",
    ["job_type", "status"],
    registry=REGISTRY,
)

# -- waits ----------------------------------------------------------------------------------

STORAGE_WAITS = Histogram(
    "archiver_storage_wait_seconds",
    "Waits for cold data to become readable: storage lts (a tape recall or cold-bucket "
    "restore) or landing (GLACIER landing objects); outcome ready or timeout.",
    ["storage", "outcome"],
    buckets=_WAIT_BUCKETS_S,
    registry=REGISTRY,
)

# -- SciCat ---------------------------------------------------------------------------------

SCICAT_REQUESTS = Counter(
    "archiver_scicat_requests_total",
    "Requests to SciCat by HTTP method and outcome: the status class (2xx, 4xx, 5xx, ...) "
    "or error when no answer came (connection refused, timeout).",
    ["method", "outcome"],
    registry=REGISTRY,
)

# -- gateway --------------------------------------------------------------------------------

HTTP_REQUESTS = Counter(
    "archiver_http_requests_total",
    "Requests the gateway answered, by method, route template and status code.",
    ["method", "route", "status"],
    registry=REGISTRY,
)
HTTP_DURATION = Histogram(
    "archiver_http_request_duration_seconds",
    "Time the gateway took to answer, by route template.",
    ["method", "route"],
    registry=REGISTRY,
)


# -- helpers ----------------------------------------------------------------------------------


def count_packed(packed_bytes: int) -> None:
    BYTES_PACKED.inc(packed_bytes)


def count_packing_outcome(outcome: str) -> None:
    DATASETS_PACKED.labels(outcome).inc()


def count_copied(copied_bytes: int) -> None:
    BYTES_COPIED.inc(copied_bytes)


def count_retrieved(retrieved_bytes: int) -> None:
    BYTES_RETRIEVED.inc(retrieved_bytes)


def count_verdict(job_type: str, *, ok: bool, bytes_read: int) -> None:
    VERIFICATIONS.labels(job_type, "ok" if ok else "failed").inc()
    if ok:
        BYTES_VERIFIED.labels(job_type).inc(bytes_read)


def count_dataset_finished(job_type: str, state: str, error_kind: str | None) -> None:
    DATASETS_FINISHED.labels(job_type, state, error_kind or "").inc()


def count_job_reconciled(job_type: str) -> None:
    JOBS_RECONCILED.labels(job_type).inc()


def count_job_finished(job_type: str, status: str) -> None:
    JOBS_FINISHED.labels(job_type, status).inc()


def observe_storage_wait(storage: str, seconds: float, *, ready: bool) -> None:
    STORAGE_WAITS.labels(storage, "ready" if ready else "timeout").observe(seconds)


def count_scicat_request(method: str, status_code: int | None) -> None:
    """One request's outcome; `status_code` None: no answer came."""
    outcome = "error" if status_code is None else f"{status_code // 100}xx"
    SCICAT_REQUESTS.labels(method.upper(), outcome).inc()


def observe_http_request(method: str, route: str, status: int, seconds: float) -> None:
    HTTP_REQUESTS.labels(method, route, str(status)).inc()
    HTTP_DURATION.labels(method, route).observe(seconds)


class ConsumerCounters:
    """One consumer's message counters, labels bound once."""

    def __init__(self, service: str, consumer: str) -> None:
        self.service = service
        self.consumer = consumer
        self._handled = MESSAGES_HANDLED.labels(service, consumer)
        self._retried = MESSAGES_RETRIED.labels(service, consumer)
        self._duration = HANDLER_DURATION.labels(service, consumer)

    def handled(self) -> None:
        self._handled.inc()

    def retried(self) -> None:
        self._retried.inc()

    def dead_lettered(self, cause: str) -> None:
        MESSAGES_DEAD_LETTERED.labels(self.service, self.consumer, cause).inc()

    def handler_ran(self, seconds: float) -> None:
        self._duration.observe(seconds)


def set_consumer_lag(
    service: str, stream: str, consumer: str, *, pending: int, ack_pending: int
) -> None:
    CONSUMER_PENDING.labels(service, stream, consumer).set(pending)
    CONSUMER_ACK_PENDING.labels(service, stream, consumer).set(ack_pending)


def render() -> bytes:
    """The registry in Prometheus's text format."""
    return generate_latest(REGISTRY)


def exported_names() -> frozenset[str]:
    """Every series name the registry can export (a counter's `_total`, a histogram's
    `_bucket`, `_sum` and `_count`), whether or not a sample exists yet."""
    suffixes = {
        "counter": ("_total",),
        "histogram": ("_bucket", "_sum", "_count"),
        "summary": ("", "_sum", "_count"),
        "info": ("_info",),
    }
    return frozenset(
        f"{family.name}{suffix}"
        for family in REGISTRY.collect()
        for suffix in suffixes.get(family.type, ("",))
    )
