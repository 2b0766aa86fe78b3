"""The datablocker's per-dataset KV records, read by other services through `runtime.kvstore`.

- `contracts.kv.DATABLOCKS`, keyed by `kv.id_key(pid)`: the `DatablocksCreated`
  event of the dataset's packing (its datablocks and checksums).
- `contracts.kv.CLEANED_DATASETS`, keyed by `kv.id_key(pid)`: a `CleanedDataset`,
  written before the dataset's landing and archival copies are removed.

The gateway reads both to refuse uploads that would never be archived.
"""

from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict

from contracts.events import ArchiveId, DatasetPid, JobId


class CleanedDataset(BaseModel):
    """A dataset archived and removed from the landing zone and the archival bucket."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: Literal[1] = 1
    pid: DatasetPid
    job_id: JobId
    archived_at: AwareDatetime
    """`occurred_at` of the `dataset.archived` event."""
    archive_ids: tuple[ArchiveId, ...]
