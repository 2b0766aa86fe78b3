"""Dataset, origdatablock and datablock logic (no HTTP here).

Behaviour follows SciCatProject/backend v4.28's datasets/datablocks/origdatablocks
controllers and Mongoose schemas (rights: `access.Caller`), including the
quirks callers must live with:

- `update_dataset` sets top-level fields like Mongoose `findOneAndUpdate`: a
  nested `datasetlifecycle` replaces the whole sub-document, and fields it does
  not carry fall back to the schema defaults (archivable=true, ...).
- the dataset routes add an (orig)datablock's size to the dataset's counters
  (incrementally), the plain origdatablock routes recompute them from all
  origdatablocks of the dataset.
- read-merge-write: `PATCH .../datasetlifecycle` reads the dataset, merges the
  lifecycle in memory and writes the whole dataset back; the datablock routes
  read the dataset, create the block and then write counters computed from what
  they read. Between read and write SciCat awaits other work; the stand-in
  pauses `write_window_s` there, so a concurrent write in that window is lost
  exactly as it can be in SciCat.
"""

from __future__ import annotations

import asyncio
import copy
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from devstack.scicat import dtos
from devstack.scicat.access import Caller
from devstack.scicat.errors import forbidden_resource, internal_error, nest_error, status_error
from devstack.scicat.store import StateStore
from devstack.scicat.wherefilter import matches

Clock = Callable[[], datetime]

_DATE_FIELDS = ("creationTime", "startTime", "endTime")
_LIFECYCLE_DATE_FIELDS = (
    "dateOfDiskPurging",
    "archiveRetentionTime",
    "dateOfPublishing",
    "publishedOn",
)


def iso(moment: datetime) -> str:
    """A Date as Mongo/JSON renders it: UTC with milliseconds and 'Z'."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _normalise_date(value: Any) -> Any:
    parsed = dtos.parse_date(value)
    if parsed is None:
        return value
    if parsed.tzinfo is None:  # UTCTimeInterceptor: naive times are taken as UTC
        parsed = parsed.replace(tzinfo=UTC)
    return iso(parsed)


def _js_month_day(now: datetime) -> datetime:
    """`new Date(y, m, now.getDay())`: SciCat passes the weekday as day of month (0 rolls back)."""
    weekday_js = (now.weekday() + 1) % 7  # JS: Sunday is 0
    first = datetime(now.year, now.month, 1, tzinfo=UTC)
    return first + timedelta(days=weekday_js - 1)


def lifecycle_defaults(now: datetime, started: datetime) -> dict[str, Any]:
    """LifecycleSchema defaults (src/datasets/schemas/lifecycle.schema.ts).

    `dateOfDiskPurging`/`publishedOn` default to `Date.now()` evaluated once when
    the backend starts, hence `started`; the retention/publishing defaults use
    the weekday quirk above (POLICY_*_SHIFT = 0).
    """
    return {
        "archivable": True,
        "retrievable": False,
        "publishable": False,
        "dateOfDiskPurging": iso(started),
        "archiveRetentionTime": iso(_js_month_day(now)),
        "dateOfPublishing": iso(_js_month_day(now)),
        "publishedOn": iso(started),
        "isOnCentralDisk": True,
        "archiveStatusMessage": "datasetCreated",
        "retrieveStatusMessage": "",
        "archiveReturnMessage": {},
        "retrieveReturnMessage": {},
        "retrieveIntegrityCheck": False,
    }


def _lifecycle_with_defaults(given: Any, now: datetime, started: datetime) -> dict[str, Any]:
    """Cast a lifecycle sub-document: unknown keys dropped (strict schema), defaults filled."""
    given = given if isinstance(given, dict) else {}
    known = {k: v for k, v in given.items() if k in dtos.LIFECYCLE and v is not None}
    for field in _LIFECYCLE_DATE_FIELDS:
        if field in known:
            known[field] = _normalise_date(known[field])
    return {**lifecycle_defaults(now, started), **known}


def to_current_schema(body: dict[str, Any], dataset_type: str) -> dict[str, Any]:
    """v3 (obsolete) field names -> stored names, as convertObsoleteToCurrentSchema."""
    out = dict(body)
    renames = {"proposalId": "proposalIds"}
    if dataset_type == "raw":
        renames |= {
            "sampleId": "sampleIds",
            "instrumentId": "instrumentIds",
            "principalInvestigator": "principalInvestigators",
        }
    elif dataset_type == "derived":
        renames |= {"investigator": "principalInvestigators"}
    for old, new in renames.items():
        if old in out:
            out[new] = [out[old]]
    # The Mongoose schema is strict: obsolete names are not stored.
    for old in ("proposalId", "sampleId", "instrumentId", "principalInvestigator", "investigator"):
        out.pop(old, None)
    return out


def to_obsolete_view(dataset: dict[str, Any]) -> dict[str, Any]:
    """Stored dataset -> v3 reply (convertCurrentToObsoleteSchema): adds singular names."""
    out = dict(dataset)
    for plural, singular in (
        ("proposalIds", "proposalId"),
        ("sampleIds", "sampleId"),
        ("instrumentIds", "instrumentId"),
        ("principalInvestigators", "principalInvestigator"),
    ):
        if dataset.get(plural):
            out[singular] = dataset[plural][0]
    if dataset.get("type") == "derived" and dataset.get("principalInvestigators"):
        out["investigator"] = dataset["principalInvestigators"][0]
    return out


class Catalog:
    """The dataset side of the stand-in, working on a `StateStore`."""

    def __init__(
        self, store: StateStore, pid_prefix: str, clock: Clock, write_window_s: float = 0.0
    ) -> None:
        self._store = store
        self._pid_prefix = pid_prefix.rstrip("/")
        self._clock = clock
        self._started = clock()
        self._write_window_s = write_window_s

    async def _write_window(self) -> None:
        """SciCat's awaits between reading a document and writing it back."""
        if self._write_window_s > 0:
            await asyncio.sleep(self._write_window_s)

    # --- datasets ---------------------------------------------------------------------

    def validate_dataset(self, body: Any, api_version: int) -> list[str]:
        """Validation errors for a create body (v3 obsolete DTOs or v4 CreateDatasetDto)."""
        if not isinstance(body, dict):
            return ["body must be a JSON object"]
        if api_version == 4:
            return dtos.check(body, dtos.V4_CREATE)
        spec = {
            "raw": dtos.V3_RAW_CREATE,
            "derived": dtos.V3_DERIVED_CREATE,
        }.get(body.get("type"), dtos.V4_CREATE)
        return dtos.check(body, spec)

    def create_dataset(self, caller: Caller, body: dict[str, Any], api_version: int) -> dict:
        if not caller.may_create_datasets:
            raise forbidden_resource()
        errors = self.validate_dataset(body, api_version)
        if errors:
            # v3 validates by hand and throws HttpException({status, message});
            # v4 goes through the global ValidationPipe (Nest's own shape).
            raise status_error(400, errors) if api_version == 3 else nest_error(400, errors)
        self._check_create_rights(caller, body)
        doc = to_current_schema(body, body["type"]) if api_version == 3 else dict(body)
        pid = doc.get("pid") or f"{self._pid_prefix}/{uuid.uuid4()}"
        if pid in self._store.datasets:
            raise nest_error(409, f"A dataset with pid {pid} already exists!")
        now = self._clock()
        stored = self._with_schema_defaults(doc, now)
        stored |= {
            "pid": pid,
            "_id": pid,
            "version": str(api_version),  # addApiVersionField takes it from the route
            "createdBy": caller.username,
            "updatedBy": caller.username,
            "createdAt": iso(now),
            "updatedAt": iso(now),
        }
        self._store.datasets[pid] = stored
        self._store.save("datasets")
        return stored

    def _check_create_rights(self, caller: Caller, body: dict[str, Any]) -> None:
        """checkPermissionsForObsoleteDatasetCreate."""
        if not caller.may_create_dataset(body):
            raise nest_error(403, "Unauthorized to create this dataset")

    def _with_schema_defaults(self, doc: dict[str, Any], now: datetime) -> dict[str, Any]:
        stored = {
            "size": 0,
            "packedSize": 0,
            "numberOfFiles": 0,
            "numberOfFilesArchived": 0,
            "keywords": [],
            "techniques": [],
            "relationships": [],
            "sharedWith": [],
            "accessGroups": [],
            "scientificMetadata": {},
            "isPublished": False,
            **{k: v for k, v in doc.items() if k != "datasetlifecycle"},
        }
        for field in _DATE_FIELDS:
            if field in stored:
                stored[field] = _normalise_date(stored[field])
        if isinstance(stored.get("sourceFolder"), str):
            stored["sourceFolder"] = stored["sourceFolder"].rstrip("/")  # schema setter stripSlash
        stored["datasetlifecycle"] = _lifecycle_with_defaults(
            doc.get("datasetlifecycle"), now, self._started
        )
        return stored

    def find_dataset(self, pid: str) -> dict[str, Any] | None:
        return self._store.datasets.get(pid)

    def dataset_pids(self) -> list[str]:
        """Every pid, in insertion (Mongo natural) order."""
        return list(self._store.datasets)

    def readable_dataset(self, caller: Caller, pid: str) -> dict[str, Any]:
        """The dataset, or 404 when missing and 403 when the caller may not see it."""
        dataset = self._store.datasets.get(pid)
        if dataset is None:
            raise nest_error(404, f"dataset: {pid} not found")
        if not caller.may_read_dataset(dataset):
            raise nest_error(403, "Unauthorized access")
        return dataset

    def dataset_for_blocks(self, caller: Caller, pid: str, allowed: Callable[[dict], bool]) -> dict:
        """checkPermissionsForDatasetExtended: 404 when missing, 403 "Unauthorized access"."""
        dataset = self._store.datasets.get(pid)
        if dataset is None:
            raise nest_error(404, f"dataset: {pid} not found")
        if not allowed(dataset):
            raise nest_error(403, "Unauthorized access")
        return dataset

    def update_dataset(self, pid: str, fields: dict[str, Any], username: str) -> dict[str, Any]:
        """Mongoose findOneAndUpdate: each top-level key replaced, sub-documents re-defaulted."""
        dataset = self._store.datasets[pid]
        now = self._clock()
        for key, value in fields.items():
            if key in ("pid", "_id"):
                continue
            if key == "datasetlifecycle":
                dataset[key] = _lifecycle_with_defaults(value, now, self._started)
            elif key in _DATE_FIELDS:
                dataset[key] = _normalise_date(value)
            elif value is not None:  # application/json: null means "do not change"
                dataset[key] = value
        dataset["updatedBy"] = username
        dataset["updatedAt"] = iso(now)
        self._store.save("datasets")
        return dataset

    def patch_dataset(
        self, caller: Caller, pid: str, body: Any, api_version: int, is_merge_patch: bool
    ) -> dict[str, Any]:
        if not caller.may_create_datasets:  # endpoint DatasetUpdate
            raise forbidden_resource()
        dataset = self._store.datasets.get(pid)
        if dataset is None:
            raise nest_error(404, None if api_version == 3 else "Dataset not found")
        if not isinstance(body, dict):
            raise nest_error(400, ["body must be a JSON object"])
        if api_version == 3:
            spec = {"raw": dtos.V3_RAW_UPDATE, "derived": dtos.V3_DERIVED_UPDATE}.get(
                dataset.get("type"), dtos.V4_UPDATE
            )
            errors = dtos.check(body, spec, partial=True)
            if errors:
                raise status_error(400, errors)
        else:
            errors = dtos.check(body, dtos.V4_UPDATE, partial=True)
            if errors:
                raise nest_error(400, errors)
        if not caller.may_update_dataset(dataset):
            raise nest_error(403, "Unauthorized to update this dataset")
        if api_version == 3:
            # The v3 controller ignores the content type: always $set semantics.
            fields = to_current_schema(body, dataset.get("type", ""))
        elif is_merge_patch:
            fields = merge_patch(dataset, body)
        else:
            fields = body
        return self.update_dataset(pid, fields, caller.username)

    async def patch_lifecycle(self, caller: Caller, pid: str, body: Any) -> dict[str, Any]:
        """findByIdAndUpdateLifecycle: read, merge `{...current, ...body}`, write it all back.

        Only an empty body is "empty": null values are accepted and stored as null.
        """
        if not caller.may_update_lifecycles:
            raise forbidden_resource()
        if not isinstance(body, dict):
            raise nest_error(400, ["an unknown value was passed to the validate function"])
        errors = dtos.check(body, dtos.LIFECYCLE, partial=True)
        if errors:
            raise nest_error(400, errors)
        if not body:
            raise nest_error(400, "dataset lifecycle DTO must not be empty")
        found = self._store.datasets.get(pid)
        if found is None:
            raise nest_error(404, f"dataset with pid {pid} not found")
        snapshot = copy.deepcopy(found)
        changes = {
            k: _normalise_date(v) if k in _LIFECYCLE_DATE_FIELDS and v is not None else v
            for k, v in body.items()
        }
        snapshot["datasetlifecycle"] = {**(snapshot.get("datasetlifecycle") or {}), **changes}
        if not caller.may_update_lifecycle(snapshot):
            raise nest_error(403, "Unauthorized to update this dataset")
        await self._write_window()
        # findByIdAndUpdate(pid, foundDataset): every field as read, so a write
        # made since the read is undone.
        self._store.datasets[pid] = {
            **snapshot,
            "updatedBy": caller.username,
            "updatedAt": iso(self._clock()),
        }
        self._store.save("datasets")
        return self._store.datasets[pid]["datasetlifecycle"]

    # --- origdatablocks -----------------------------------------------------------------

    def create_origdatablock(
        self, caller: Caller, body: Any, dataset_pid: str | None
    ) -> dict[str, Any]:
        """Through the dataset route when `dataset_pid` is given, else the plain route."""
        if not caller.may_create_datasets:  # endpoint (Dataset)OrigdatablockCreate
            raise forbidden_resource()
        spec = dtos.DATASET_ORIGDATABLOCK if dataset_pid else dtos.ORIGDATABLOCK
        errors = dtos.check(body, spec) if isinstance(body, dict) else ["body must be an object"]
        if errors:
            raise nest_error(400, errors)
        pid = dataset_pid or body["datasetId"]
        if dataset_pid:
            dataset = self.dataset_for_blocks(caller, pid, caller.may_create_blocks_in)
        else:
            dataset = self._store.datasets.get(pid)
            if dataset is None:
                raise nest_error(404, f"Dataset: {pid} not found for attaching an origdatablock")
            if not caller.may_create_blocks_in(dataset):
                raise nest_error(403, "Unauthorized access")
        block = self._new_block(body, dataset, caller)
        self._store.origdatablocks[block["_id"]] = block
        self._store.save("origdatablocks")
        if dataset_pid:
            counters = {
                "size": dataset.get("size", 0) + block["size"],
                "numberOfFiles": dataset.get("numberOfFiles", 0) + len(block["dataFileList"]),
            }
        else:
            blocks = self.origdatablocks_of(pid)
            counters = {
                "size": sum(b["size"] for b in blocks),
                "numberOfFiles": sum(len(b["dataFileList"]) for b in blocks),
            }
        self.update_dataset(pid, counters, caller.username)
        return block

    def origdatablocks_of(self, pid: str) -> list[dict[str, Any]]:
        return [b for b in self._store.origdatablocks.values() if b["datasetId"] == pid]

    def _new_block(self, body: dict[str, Any], dataset: dict[str, Any], caller: Caller) -> dict:
        now = iso(self._clock())
        block_id = str(uuid.uuid4())
        files = [
            {**f, "time": _normalise_date(f["time"])} if "time" in f else f
            for f in body["dataFileList"]
        ]
        return {
            "_id": block_id,
            "id": block_id,
            **body,
            "dataFileList": files,
            "datasetId": dataset["pid"],
            "ownerGroup": dataset["ownerGroup"],
            "accessGroups": dataset.get("accessGroups", []),
            "instrumentGroup": dataset.get("instrumentGroup"),
            "isPublished": body.get("isPublished", False),
            "createdBy": caller.username,
            "updatedBy": caller.username,
            "createdAt": now,
            "updatedAt": now,
        }

    # --- datablocks ---------------------------------------------------------------------

    async def create_datablock(
        self, caller: Caller, body: Any, dataset_pid: str | None
    ) -> dict[str, Any]:
        """POST /Datasets/{pid}/datablocks (`dataset_pid`) or POST /datablocks.

        A duplicate archiveId is a bare 500 on the dataset route (an uncaught Mongo
        error) and 409 on the plain one. The dataset's counters are computed from
        the dataset as read before the block was created (read-merge-write).
        """
        if dataset_pid and not caller.may_create_datasets:  # endpoint DatasetDatablockCreate
            raise forbidden_resource()
        spec = dtos.DATASET_DATABLOCK if dataset_pid else dtos.DATABLOCK
        errors = dtos.check(body, spec) if isinstance(body, dict) else ["body must be an object"]
        if errors:
            raise nest_error(400, errors)
        pid = dataset_pid or body["datasetId"]
        if dataset_pid:
            found = self.dataset_for_blocks(caller, pid, caller.may_create_blocks_in)
        elif not caller.may_create_datablock_records:
            raise nest_error(403)  # checkPermission: ForbiddenException() without a message
        else:
            found = self._store.datasets.get(pid)
        dataset = copy.deepcopy(found) if found is not None else None
        if any(b["archiveId"] == body["archiveId"] for b in self._store.datablocks.values()):
            if dataset_pid:
                raise internal_error()
            raise nest_error(409, "A datablock with this this unique key already exists!")
        owner = dataset or {"pid": pid, "ownerGroup": body.get("ownerGroup", "")}
        block = self._new_block(body, owner, caller)
        if not dataset_pid:
            block["ownerGroup"] = body.get("ownerGroup") or owner.get("ownerGroup") or ""
            block["accessGroups"] = body.get("accessGroups") or owner.get("accessGroups") or []
        self._store.datablocks[block["_id"]] = block
        self._store.save("datablocks")
        if dataset is not None:
            await self._write_window()
            self.update_dataset(
                pid,
                {
                    "packedSize": (dataset.get("packedSize") or 0) + block["packedSize"],
                    "numberOfFilesArchived": dataset.get("numberOfFilesArchived", 0)
                    + len(block["dataFileList"]),
                },
                caller.username,
            )
        return block

    def blocks_of_dataset(self, caller: Caller, pid: str, kind: str) -> list[dict[str, Any]]:
        """GET /Datasets/{pid}/(orig)datablocks: all of the dataset's blocks, if the caller
        may read them (ReadAny is admins' only; others need the access conditions)."""
        self.dataset_for_blocks(caller, pid, caller.may_read_blocks_of)
        blocks = self._store.origdatablocks if kind == "origdatablocks" else self._store.datablocks
        return [b for b in blocks.values() if b["datasetId"] == pid]

    def datablocks_matching(self, caller: Caller, where: dict[str, Any]) -> list[dict]:
        """GET /datablocks?filter=: the where filter, limited to readable blocks unless
        the caller may read any (DatablockReadAny: DELETE_GROUPS and admins)."""
        return [
            block
            for block in self._store.datablocks.values()
            if matches(block, where) and caller.may_read_datablock(block)
        ]

    def datablocks_matching_all(self, where: dict[str, Any]) -> list[dict]:
        """Datablocks matching `where`, unfiltered by rights (the v3 dataset lookups)."""
        return [b for b in self._store.datablocks.values() if matches(b, where)]

    def delete_datablock(self, caller: Caller, pid: str, block_id: str) -> None:
        """DELETE /Datasets/{pid}/datablocks/{id}: DELETE_GROUPS only."""
        if not caller.may_delete_blocks:  # endpoint DatasetDatablockDelete
            raise forbidden_resource()
        found = self.dataset_for_blocks(caller, pid, lambda _: caller.may_delete_blocks)
        dataset = copy.deepcopy(found)
        block = self._store.datablocks.get(block_id)
        if block is None or block["datasetId"] != pid:
            raise nest_error(404, f"datablock: {block_id} not found")
        del self._store.datablocks[block_id]
        self._store.save("datablocks")
        self.update_dataset(
            pid,
            {
                "packedSize": (dataset.get("packedSize") or 0) - block["packedSize"],
                "numberOfFilesArchived": dataset.get("numberOfFilesArchived", 0)
                - len(block["dataFileList"]),
            },
            caller.username,
        )


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch (json-merge-patch's `apply`)."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result
