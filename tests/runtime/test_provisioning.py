"""Provisioning against a real nats-server: idempotent, and it reconciles drift."""

from dataclasses import replace

import pytest
from nats.js import JetStreamContext
from nats.js.api import RetentionPolicy

from contracts import streams
from runtime.provisioning import (
    NotProvisionedError,
    check_provisioned,
    consumer_config,
    provision,
)


async def test_provisioning_twice_leaves_the_same_config(clean_js: JetStreamContext) -> None:
    """A second run changes nothing and reports nothing."""
    first = await provision(clean_js)
    configs = {
        c.durable: (await clean_js.consumer_info(c.stream, c.durable)).config
        for c in streams.CONSUMERS
    }
    second = await provision(clean_js)

    assert set(first.streams_created) == {"ARCHIVER", "MINIO", "DEADLETTERS"}
    assert second.streams_created == second.streams_updated == ()
    assert second.consumers_created == second.consumers_updated == ()
    for c in streams.CONSUMERS:
        assert (await clean_js.consumer_info(c.stream, c.durable)).config == configs[c.durable]


async def test_streams_keep_history_for_replay(clean_js: JetStreamContext) -> None:
    """Every stream uses limits retention, so acked events stay replayable."""
    await provision(clean_js)
    archiver = (await clean_js.stream_info("ARCHIVER")).config
    assert archiver.retention == RetentionPolicy.LIMITS
    assert archiver.max_age == 30 * 24 * 3600
    assert archiver.duplicate_window == 1800


async def test_a_drifted_consumer_is_put_back(clean_js: JetStreamContext) -> None:
    """Someone raised max_deliver by hand; the next start restores the contract."""
    await provision(clean_js)
    spec = streams.VERIFIER_LTS_MOVED
    await clean_js.add_consumer(spec.stream, consumer_config(replace(spec, max_deliver=99)))
    assert (await clean_js.consumer_info(spec.stream, spec.durable)).config.max_deliver == 99

    report = await provision(clean_js)

    assert report.consumers_updated == (spec.durable,)
    info = await clean_js.consumer_info(spec.stream, spec.durable)
    assert info.config.max_deliver == 12
    assert info.config.ack_wait == 30
    assert info.config.filter_subject == "lts.moved"


async def test_a_drifted_stream_is_put_back(clean_js: JetStreamContext) -> None:
    """A stream whose max_age went to unlimited (FastStream's declare does that) is restored."""
    await provision(clean_js)
    config = (await clean_js.stream_info("ARCHIVER")).config
    config.max_age = 0
    await clean_js.update_stream(config)

    report = await provision(clean_js)

    assert report.streams_updated == ("ARCHIVER",)
    assert (await clean_js.stream_info("ARCHIVER")).config.max_age == 30 * 24 * 3600


async def test_consumers_have_no_server_backoff(clean_js: JetStreamContext) -> None:
    """With a backoff list the server ignores later naks' delays; retries follow our naks."""
    await provision(clean_js)
    for spec in streams.CONSUMERS:
        info = await clean_js.consumer_info(spec.stream, spec.durable)
        assert not info.config.backoff
        assert info.config.ack_wait == 30


async def test_provisioning_creates_every_bucket_once(clean_js: JetStreamContext) -> None:
    """Services only open buckets: provisioning creates them, with one value per key."""
    first = await provision(clean_js)
    second = await provision(clean_js)
    jobs = await clean_js.stream_info("KV_jobs")

    assert first.buckets_created == (
        "upload_reservations",
        "datablocks",
        "packing_failures",
        "packing",
        "cleaned_datasets",
        "jobs",
        "retrievals",
        "scicat_sync_write_leases",
        "periodic_tasks",
        "scicat_sync_applied",
    )
    assert second.buckets_created == ()
    assert jobs.config.max_msgs_per_subject == 1
    assert (
        jobs.config.description
        == "gateway creates (and records cancel and retry requests), ltsmover updates: progress"
    )


async def test_a_missing_durable_is_named_with_the_command_that_creates_it(
    clean_js: JetStreamContext,
) -> None:
    """A service starting on an unprovisioned bus learns which durable is missing and why."""
    with pytest.raises(NotProvisionedError) as missing:
        await check_provisioned(clean_js, streams.consumers_of("verifier"))

    assert str(missing.value) == (
        "durable consumer verifier--lts_moved of stream ARCHIVER does not exist: "
        "run `archiver provision` (with the provisioner's credentials) first"
    )
