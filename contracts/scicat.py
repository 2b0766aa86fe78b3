"""SciCat vocabulary: status codes, lifecycle messages and the payloads we send.

Outbound payloads have no non-None defaults and are sent with
`model_dump(exclude_unset=True, by_alias=True)`, so a patch carries exactly the
fields its author set. (The reference's PATCH models defaulted
`accessGroups: []` and wiped data on every update.)
"""

from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

JobStatusCode = Literal[
    "jobSubmitted",
    "inProgress",
    "finishedSuccessful",
    "finishedWithDatasetErrors",
    "finishedUnsuccessful",
]
FINAL_JOB_STATUS_CODES: frozenset[str] = frozenset(
    {"finishedSuccessful", "finishedWithDatasetErrors", "finishedUnsuccessful"}
)

ArchiveStatusMessage = Literal[
    "datasetCreated",
    "started",
    "datasetOnArchiveDisk",
    "missingFilesError",
    "scheduleArchiveJobFailed",
]
RetrieveStatusMessage = Literal["started", "datasetRetrieved", "datasetRetrievalFailed"]


class ReturnMessage(BaseModel):
    """`archiveReturnMessage` / `retrieveReturnMessage`: an object in SciCat's OpenAPI
    (`LifecycleClass`, backend src/datasets/schemas/lifecycle.schema.ts), so typed clients
    such as scicat-sdk-py can read the lifecycle back. `message` says what went wrong."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    message: str


class LifecyclePatch(BaseModel):
    """Fields of `datasetlifecycle` to merge; only the ones set are sent."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    archivable: bool | None = None
    retrievable: bool | None = None
    archive_status_message: ArchiveStatusMessage | None = Field(None, alias="archiveStatusMessage")
    archive_return_message: ReturnMessage | None = Field(None, alias="archiveReturnMessage")
    retrieve_status_message: RetrieveStatusMessage | None = Field(
        None, alias="retrieveStatusMessage"
    )
    retrieve_return_message: ReturnMessage | None = Field(None, alias="retrieveReturnMessage")
    retrieve_integrity_check: bool | None = Field(None, alias="retrieveIntegrityCheck")

    @field_validator("archive_return_message", "retrieve_return_message", mode="before")
    @classmethod
    def _text_as_message(cls, value: Any) -> Any:
        """A bare text (events published before return messages were objects) is the message."""
        return {"message": value} if isinstance(value, str) else value

    def to_scicat(self) -> dict[str, object]:
        """The JSON body for `PATCH /Datasets/{pid}/datasetlifecycle`.

        Nones are dropped too: after a trip over the bus every field counts as
        set, and a null must never overwrite a SciCat value.
        """
        return self.model_dump(mode="json", exclude_unset=True, exclude_none=True, by_alias=True)


class DataFilePayload(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    path: str
    size: int
    time: AwareDatetime
    chk: str
    uid: str
    gid: str
    perm: str


class DatablockPayload(BaseModel):
    """Body of `POST /api/v3/Datasets/{pid}/datablocks`."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    archive_id: str = Field(alias="archiveId")
    size: int
    packed_size: int = Field(alias="packedSize")
    chk_alg: str = Field(alias="chkAlg")
    version: str
    data_file_list: tuple[DataFilePayload, ...] = Field(alias="dataFileList")

    def to_scicat(self) -> dict[str, object]:
        return self.model_dump(mode="json", by_alias=True)
