"""The record of one datablock's copy in the retrieval bucket, in KV `contracts.kv.RETRIEVALS`.

Keyed by `kv.id_key(archive_id)`; only the ltsmover writes it, always with
compare-and-set. One job makes a copy (`job_id`); other jobs that want the same
datablock meanwhile add themselves to `waiting_jobs` and are decided by the same
verdict, so two jobs for one dataset cause one copy. A verified copy is reused
until shortly before `expires_at`; then the sweeper removes record and object.
"""

from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, NonNegativeInt

from contracts.events import ArchiveId, DatasetPid, JobId

RetrievalCopyState = Literal["copying", "moved", "verified"]
"""`copying`: being written from LTS; `moved`: written, the verifier is checking it."""


class RetrievalCopy(BaseModel):
    model_config = ConfigDict(extra="forbid")

    schema_version: Literal[1] = 1
    archive_id: ArchiveId
    pid: DatasetPid
    key: str
    """The object key in the retrieval bucket."""
    state: RetrievalCopyState
    job_id: JobId
    """The job whose handler makes (or made) this copy."""
    attempt: NonNegativeInt = 0
    claimed_at: AwareDatetime
    """When `job_id` took the copy on; a claim older than the stale limit may be taken over."""
    waiting_jobs: list[JobId] = Field(default_factory=list)
    """Other jobs that want this datablock and are decided by this copy's verdict."""
    verified_at: AwareDatetime | None = None
    expires_at: AwareDatetime | None = None
    """When the copy (and every URL issued for it) expires; the sweeper removes it then."""
