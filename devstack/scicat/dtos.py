"""SciCat's request DTOs as field specs, checked the way class-validator does.

Each spec maps a field to (kind, required). `check` returns class-validator's
messages ("property x should not exist", "x must be a string", ...) so error
replies read like SciCat's. Field lists follow scicat-backend-next
`src/datasets/dto/*`, `src/datablocks/dto/*`, `src/origdatablocks/dto/*`,
`src/jobs/dto/*` (v4.x).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from enum import Enum
from typing import Any


class Kind(Enum):
    STR = "str"
    NONEMPTY_STR = "nonempty_str"
    INT = "int"
    NUMBER = "number"
    BOOL = "bool"
    DATE = "date"
    OBJECT = "object"
    STR_LIST = "str_list"
    OBJECT_LIST = "object_list"
    EMAIL = "email"
    EMAIL_LIST = "email_list"  # SciCat's CustomEmailList: one or more, ';'-separated
    DATAFILE_LIST = "datafile_list"
    DATASET_LIST = "dataset_list"
    ANY = "any"


Spec = Mapping[str, tuple[Kind, bool]]
_EMAIL = re.compile(r"^[^@\s;]+@[^@\s;]+\.[^@\s;]+$")

# --- datasets ---------------------------------------------------------------------

_OWNABLE: dict[str, tuple[Kind, bool]] = {
    "ownerGroup": (Kind.STR, True),
    "accessGroups": (Kind.STR_LIST, False),
    "instrumentGroup": (Kind.STR, False),
}

# UpdateDatasetObsoleteDto (v3): the common part of raw and derived.
_V3_COMMON: dict[str, tuple[Kind, bool]] = {
    **_OWNABLE,
    "owner": (Kind.STR, True),
    "ownerEmail": (Kind.EMAIL, False),
    "orcidOfOwner": (Kind.STR, False),
    "contactEmail": (Kind.EMAIL_LIST, True),
    "sourceFolder": (Kind.NONEMPTY_STR, True),
    "sourceFolderHost": (Kind.STR, False),
    "size": (Kind.INT, False),
    "packedSize": (Kind.INT, False),
    "numberOfFiles": (Kind.INT, False),
    "numberOfFilesArchived": (Kind.INT, False),
    "creationTime": (Kind.DATE, True),
    "validationStatus": (Kind.STR, False),
    "keywords": (Kind.STR_LIST, False),
    "description": (Kind.STR, False),
    "datasetName": (Kind.STR, False),
    "classification": (Kind.STR, False),
    "license": (Kind.STR, False),
    "isPublished": (Kind.BOOL, False),
    "techniques": (Kind.OBJECT_LIST, False),
    "sharedWith": (Kind.STR_LIST, False),
    "relationships": (Kind.OBJECT_LIST, False),
    "datasetlifecycle": (Kind.ANY, False),  # @IsOptional only: nothing checked inside
    "scientificMetadata": (Kind.OBJECT, False),
    "scientificMetadataSchema": (Kind.STR, False),
    "scientificMetadataValid": (Kind.BOOL, False),
    "comment": (Kind.STR, False),
    "dataQualityMetrics": (Kind.NUMBER, False),
    "proposalId": (Kind.STR, False),
    "runNumber": (Kind.STR, False),
}

V3_RAW_UPDATE: Spec = {
    **_V3_COMMON,
    "principalInvestigator": (Kind.STR, True),
    "startTime": (Kind.DATE, False),
    "endTime": (Kind.DATE, False),
    "creationLocation": (Kind.STR, True),
    "dataFormat": (Kind.STR, False),
    "sampleId": (Kind.STR, False),
    "instrumentId": (Kind.STR, False),
    "investigator": (Kind.STR, False),
    "inputDatasets": (Kind.STR_LIST, False),
    "usedSoftware": (Kind.STR_LIST, False),
    "jobParameters": (Kind.OBJECT, False),
    "jobLogData": (Kind.STR, False),
}
V3_DERIVED_UPDATE: Spec = {
    **_V3_COMMON,
    "investigator": (Kind.STR, True),
    "inputDatasets": (Kind.STR_LIST, True),
    "usedSoftware": (Kind.STR_LIST, True),
    "jobParameters": (Kind.OBJECT, False),
    "jobLogData": (Kind.STR, False),
}
# Create DTOs add pid/type/version; datasetName is required on create since v4.10.
_CREATE_EXTRA: dict[str, tuple[Kind, bool]] = {
    "pid": (Kind.STR, False),
    "type": (Kind.STR, False),
    "version": (Kind.STR, False),
    "datasetName": (Kind.STR, True),
}
V3_RAW_CREATE: Spec = {**V3_RAW_UPDATE, **_CREATE_EXTRA}
V3_DERIVED_CREATE: Spec = {**V3_DERIVED_UPDATE, **_CREATE_EXTRA}

# UpdateDatasetDto / CreateDatasetDto (v4, also v3 for custom types).
V4_UPDATE: Spec = {
    **_OWNABLE,
    "owner": (Kind.STR, False),
    "ownerEmail": (Kind.EMAIL, False),
    "orcidOfOwner": (Kind.STR, False),
    "contactEmail": (Kind.EMAIL_LIST, True),
    "sourceFolder": (Kind.NONEMPTY_STR, True),
    "sourceFolderHost": (Kind.STR, False),
    "size": (Kind.INT, False),
    "packedSize": (Kind.INT, False),
    "numberOfFiles": (Kind.INT, False),
    "numberOfFilesArchived": (Kind.INT, False),
    "creationTime": (Kind.DATE, True),
    "validationStatus": (Kind.STR, False),
    "keywords": (Kind.STR_LIST, False),
    "description": (Kind.STR, False),
    "datasetName": (Kind.STR, True),
    "classification": (Kind.STR, False),
    "license": (Kind.STR, False),
    "isPublished": (Kind.BOOL, False),
    "techniques": (Kind.OBJECT_LIST, False),
    "sharedWith": (Kind.STR_LIST, False),
    "relationships": (Kind.OBJECT_LIST, False),
    "datasetlifecycle": (Kind.ANY, False),
    "scientificMetadata": (Kind.OBJECT, False),
    "scientificMetadataSchema": (Kind.STR, False),
    "scientificMetadataValid": (Kind.BOOL, False),
    "comment": (Kind.STR, False),
    "dataQualityMetrics": (Kind.NUMBER, False),
    "principalInvestigators": (Kind.STR_LIST, False),
    "startTime": (Kind.DATE, False),
    "endTime": (Kind.DATE, False),
    "creationLocation": (Kind.STR, False),
    "dataFormat": (Kind.STR, False),
    "proposalIds": (Kind.STR_LIST, False),
    "sampleIds": (Kind.STR_LIST, False),
    "instrumentIds": (Kind.STR_LIST, False),
    "inputDatasets": (Kind.STR_LIST, False),
    "usedSoftware": (Kind.STR_LIST, False),
    "jobParameters": (Kind.OBJECT, False),
    "jobLogData": (Kind.STR, False),
    "runNumber": (Kind.STR, False),
}
V4_CREATE: Spec = {**V4_UPDATE, "pid": (Kind.STR, False), "type": (Kind.STR, True)}

# UpdateDatasetLifecycleDto (all optional).
LIFECYCLE: Spec = {
    "archivable": (Kind.BOOL, False),
    "retrievable": (Kind.BOOL, False),
    "publishable": (Kind.BOOL, False),
    "dateOfDiskPurging": (Kind.DATE, False),
    "archiveRetentionTime": (Kind.DATE, False),
    "dateOfPublishing": (Kind.DATE, False),
    "publishedOn": (Kind.DATE, False),
    "isOnCentralDisk": (Kind.BOOL, False),
    "archiveStatusMessage": (Kind.STR, False),
    "retrieveStatusMessage": (Kind.STR, False),
    "archiveReturnMessage": (Kind.ANY, False),
    "retrieveReturnMessage": (Kind.ANY, False),
    "exportedTo": (Kind.ANY, False),
    "retrieveIntegrityCheck": (Kind.BOOL, False),
    "storageLocation": (Kind.STR, False),
}

# --- (orig)datablocks --------------------------------------------------------------

DATAFILE: Spec = {
    "path": (Kind.STR, True),
    "size": (Kind.NUMBER, True),
    "time": (Kind.DATE, True),
    "chk": (Kind.STR, False),
    "uid": (Kind.STR, False),
    "gid": (Kind.STR, False),
    "perm": (Kind.STR, False),
    "type": (Kind.STR, False),
}
# CreateDatasetOrigDatablockDto: the dataset route takes ownership from the dataset.
DATASET_ORIGDATABLOCK: Spec = {
    "size": (Kind.INT, True),
    "chkAlg": (Kind.NONEMPTY_STR, False),
    "dataFileList": (Kind.DATAFILE_LIST, True),
    "isPublished": (Kind.BOOL, False),
}
ORIGDATABLOCK: Spec = {
    **DATASET_ORIGDATABLOCK,
    "datasetId": (Kind.STR, True),
    "ownerGroup": (Kind.NONEMPTY_STR, False),
    "accessGroups": (Kind.STR_LIST, False),
    "instrumentGroup": (Kind.STR, False),
}
DATASET_DATABLOCK: Spec = {
    "archiveId": (Kind.STR, True),
    "size": (Kind.INT, True),
    "packedSize": (Kind.INT, True),
    "chkAlg": (Kind.NONEMPTY_STR, False),
    "version": (Kind.STR, True),
    "dataFileList": (Kind.DATAFILE_LIST, True),
}
DATABLOCK: Spec = {
    **DATASET_DATABLOCK,
    "datasetId": (Kind.STR, True),
    "ownerGroup": (Kind.NONEMPTY_STR, False),
    "accessGroups": (Kind.STR_LIST, False),
    "instrumentGroup": (Kind.STR, False),
}

# --- jobs ---------------------------------------------------------------------------

JOB_CREATE_V4: Spec = {
    "type": (Kind.STR, True),
    "jobParams": (Kind.OBJECT, True),
    "ownerUser": (Kind.STR, False),
    "ownerGroup": (Kind.STR, False),
    "contactEmail": (Kind.EMAIL, False),
}
JOB_UPDATE_V4: Spec = {
    "statusCode": (Kind.STR, True),
    "statusMessage": (Kind.STR, True),
    "jobResultObject": (Kind.OBJECT, False),
}
JOB_CREATE_V3: Spec = {
    "type": (Kind.STR, True),
    "emailJobInitiator": (Kind.EMAIL, False),
    "jobParams": (Kind.OBJECT, False),
    "datasetList": (Kind.DATASET_LIST, True),
    "executionTime": (Kind.DATE, False),
    "jobStatusMessage": (Kind.STR, False),
    "jobResultObject": (Kind.OBJECT, False),
    "creationTime": (Kind.DATE, False),
}
JOB_UPDATE_V3: Spec = {
    "executionTime": (Kind.DATE, False),
    "jobStatusMessage": (Kind.STR, False),
    "jobResultObject": (Kind.OBJECT, False),
}


def parse_date(value: Any) -> datetime | None:
    """An ISO 8601 date string as a datetime, or None (class-validator's IsDateString)."""
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _kind_errors(name: str, kind: Kind, value: Any) -> list[str]:
    if kind is Kind.ANY:
        return []
    if kind is Kind.STR:
        return [] if isinstance(value, str) else [f"{name} must be a string"]
    if kind is Kind.NONEMPTY_STR:
        if not isinstance(value, str):
            return [f"{name} must be a string"]
        return [] if value else [f"{name} should not be empty"]
    if kind is Kind.INT:
        return [] if _is_int(value) else [f"{name} must be an integer number"]
    if kind is Kind.NUMBER:
        ok = _is_number(value)
        return [] if ok else [f"{name} must be a number conforming to the specified constraints"]
    if kind is Kind.BOOL:
        return [] if isinstance(value, bool) else [f"{name} must be a boolean value"]
    if kind is Kind.DATE:
        ok = parse_date(value) is not None
        return [] if ok else [f"{name} must be a valid ISO 8601 date string"]
    if kind is Kind.OBJECT:
        return [] if isinstance(value, dict) else [f"{name} must be an object"]
    if kind is Kind.STR_LIST:
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
        return [] if ok else [f"each value in {name} must be a string"]
    if kind is Kind.OBJECT_LIST:
        ok = isinstance(value, list) and all(isinstance(v, dict) for v in value)
        return [] if ok else [f"{name} must be an array"]
    if kind is Kind.EMAIL:
        ok = isinstance(value, str) and bool(_EMAIL.match(value))
        return [] if ok else [f"{name} must be an email"]
    if kind is Kind.EMAIL_LIST:
        emails = value.split(";") if isinstance(value, str) else []
        ok = bool(emails) and all(_EMAIL.match(e.strip()) for e in emails)
        return [] if ok else [f"{name} must contain valid email addresses"]
    if kind is Kind.DATAFILE_LIST:
        if not isinstance(value, list):
            return [f"{name} must be an array"]
        if not value:
            return [f"{name} should not be empty"]
        errors: list[str] = []
        for i, item in enumerate(value):
            if not isinstance(item, dict):
                errors.append(f"nested property {name} must be either object or array")
                continue
            errors += [f"{name}.{i}.{e}" for e in check(item, DATAFILE)]
        return errors
    if kind is Kind.DATASET_LIST:
        if not isinstance(value, list):
            return [f"{name} must be an array"]
        return [] if all(isinstance(v, dict) for v in value) else [f"{name} must be an array"]
    msg = f"unhandled kind {kind}"
    raise AssertionError(msg)


def check(body: Mapping[str, Any], spec: Spec, *, partial: bool = False) -> list[str]:
    """class-validator with whitelist + forbidNonWhitelisted: one message per problem."""
    errors = [f"property {key} should not exist" for key in body if key not in spec]
    for name, (kind, required) in spec.items():
        if name not in body or body[name] is None:
            # null counts as missing for @IsOptional and as a type error otherwise
            if required and not partial:
                errors += _kind_errors(name, kind, None) or [f"{name} should not be empty"]
            continue
        errors += _kind_errors(name, kind, body[name])
    return errors
