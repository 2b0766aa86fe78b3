from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from runtime.settings import LogSettings, LtsSettings, NatsSettings, S3Settings, ScicatSettings

MiB = 1024**2
GiB = 1024**3


class DatablockerSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="DATABLOCKER_", extra="ignore", use_attribute_docstrings=True
    )

    target_size_bytes: int = Field(20 * GiB, gt=0)
    """A datablock holds files up to this size; a larger file gets a datablock of its own."""
    max_parallel_datasets: int = Field(2, ge=1)
    """Datasets planned at once (listing, SciCat's file list, restore requests; little memory)."""
    max_parallel_blocks: int = Field(2, ge=1)
    """Datablocks packed at once by this instance (one consumer subscription each, nothing
    prefetched); each holds one bounded streaming buffer. Blocks of one dataset spread over
    every instance."""
    part_size_bytes: int = Field(16 * MiB, ge=5 * MiB)
    """Multipart part size of a datablock upload (raised per block to stay under 10,000 parts)."""
    copy_buffer_bytes: int = Field(8 * MiB, ge=64 * 1024)
    """tarfile's copy buffer and the streaming pipe's chunk: large, so bytes move in few calls."""
    pipe_chunks: int = Field(4, ge=1)
    """Chunks buffered between the tar writer and the uploader (memory: chunks x buffer)."""
    parallel_part_uploads: int = Field(2, ge=1, le=8)
    """Parts of one datablock uploaded at once (memory: this many parts in flight)."""
    s3_workers: int = Field(6, ge=1, le=16)
    """S3 requests of small objects made at once per dataset (restores, prefetching GETs),
    so their round trips overlap; the S3 client keeps 10 connections per host."""
    prefetch_object_bytes: int = Field(2 * MiB, ge=0)
    """Objects up to this size are fetched whole ahead of the tar writer; larger ones stream."""
    prefetch_bytes: int = Field(32 * MiB, ge=0)
    """Prefetched bytes held per dataset at most (memory: this plus one object)."""
    restore_timeout_s: float = Field(6 * 3600, gt=0)
    """How long cold (GLACIER) landing objects may take to be restored before a system failure."""
    restore_poll_s: float = Field(60.0, gt=0)
    """How often restores are checked while waiting."""
    completion_marker: str = ".archiver-upload-complete"
    """Object name (below raw_files/) that announces a finished upload; not packed unless the
    dataset registered a file of that name in SciCat. Keep it equal to the gateway's."""
    scicat_retry_timeout_s: float = Field(30.0, gt=0)
    """In-process retry time of one SciCat read (connection trouble, 5xx) before the message
    is nak-ed for later."""
    scicat_retry_attempts: int = Field(5, ge=1)
    """At most this many tries of one SciCat read within `scicat_retry_timeout_s`."""

    metrics_host: str = "127.0.0.1"
    """Address of the monitoring port (/metrics, /livez, /readyz); 0.0.0.0 in a container."""
    metrics_port: int = Field(9181, ge=0, le=65535)
    """Monitoring port: Prometheus metrics at /metrics, health at /livez and /readyz
    (0: any free port). Each service has its own default, so all five fit on one host."""

    nats: NatsSettings = Field(default_factory=NatsSettings)
    s3: S3Settings = Field(default_factory=S3Settings)  # type: ignore[arg-type]
    scicat: ScicatSettings = Field(default_factory=ScicatSettings)  # type: ignore[arg-type]
    """Read only: the files each dataset registered (origdatablocks)."""
    lts: LtsSettings = Field(default_factory=LtsSettings)
    """Read only: before cleaning up after archiving, every datablock's LTS copy must be there
    with its packed size."""
    log: LogSettings = Field(default_factory=LogSettings)
