"""Job logic: create (v4 and the v3 mapping), update, views, and job actions.

Follows scicat-backend-next `src/jobs/jobs.controller.utils.ts`: the request is
authorised and its datasetList checked, the `validate` actions of the job type
run, the job is saved (statusCode "jobSubmitted"), then the `url` actions run
inside the same request. A failing url action becomes the creator's reply
(`{"status", "message": "A remote URL call failed with response: ..."}` with the
remote status; a network error gives 500) while the saved job stays as it is.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

import httpx

from devstack.scicat import dtos
from devstack.scicat.auth import Caller
from devstack.scicat.catalog import Catalog, Clock, iso
from devstack.scicat.errors import internal_error, nest_error, status_error
from devstack.scicat.jobconfig import (
    JobConfig,
    JobTypeConfig,
    UrlAction,
    ValidateAction,
    render_template,
    validation_failure,
)
from devstack.scicat.store import StateStore

log = logging.getLogger("devstack.scicat.jobs")

DEFAULT_STATUS_CODE = "jobSubmitted"
DEFAULT_STATUS_MESSAGE = "Job submitted."
_DATASET_AUTH = ("#datasetPublic", "#datasetAccess", "#datasetOwner")


def job_v3_reply(job: dict[str, Any]) -> dict[str, Any]:
    """OutputJobV3Dto: v4 fields mapped back (jobStatusMessage is the statusCode)."""
    params = dict(job.get("jobParams") or {})
    return {
        "_id": job["_id"],
        "id": job["id"],
        "emailJobInitiator": job.get("contactEmail"),
        "type": job["type"],
        "creationTime": job.get("createdAt"),
        "executionTime": params.get("executionTime"),
        "jobParams": {**params, "username": job.get("ownerUser")},
        "jobStatusMessage": job.get("statusCode"),
        "datasetList": params.get("datasetList", []),
        "jobResultObject": job.get("jobResultObject", {}),
    }


class Jobs:
    def __init__(
        self,
        store: StateStore,
        catalog: Catalog,
        job_config: JobConfig,
        http: httpx.AsyncClient,
        clock: Clock,
    ) -> None:
        self._store = store
        self._catalog = catalog
        self._config = job_config
        self._http = http
        self._clock = clock

    def _job_type(self, job_type: Any) -> JobTypeConfig:
        found = self._config.get(job_type) if isinstance(job_type, str) else None
        if found is None:
            raise status_error(400, f"Invalid job type: {job_type}")
        return found

    # --- create ---------------------------------------------------------------------

    def map_v3_create(self, caller: Caller, body: Any) -> dict[str, Any]:
        """CreateJobV3MappingInterceptor: v3 body -> v4 CreateJobDto."""
        if not isinstance(body, dict):
            raise nest_error(400, ["body must be an object"])
        errors = dtos.check(body, dtos.JOB_CREATE_V3)
        if errors:
            raise nest_error(400, errors)
        job_type = self._job_type(body["type"])
        given_params = {
            k: v for k, v in (body.get("jobParams") or {}).items() if k != "datasetList"
        }
        params: dict[str, Any] = {"datasetList": body.get("datasetList") or [], **given_params}
        if body.get("executionTime"):
            params["executionTime"] = body["executionTime"]
        if body.get("jobStatusMessage"):
            params["jobStatusMessage"] = body["jobStatusMessage"]
        v4: dict[str, Any] = {
            "type": body["type"],
            "jobParams": params,
            "contactEmail": body.get("emailJobInitiator") or caller.email,
            "ownerUser": params.get("username", caller.username),
        }
        if "ownerGroup" in params:
            v4["ownerGroup"] = params["ownerGroup"]
        elif params["datasetList"] and job_type.create.auth == "#datasetAccess":
            groups = [set(caller.groups)]
            for entry in params["datasetList"]:
                dataset = self._catalog.find_dataset(entry.get("pid", "")) or {}
                groups.append({dataset.get("ownerGroup"), *(dataset.get("accessGroups") or [])})
            common = sorted(set.intersection(*groups) - {None})
            if common:
                v4["ownerGroup"] = common[0]
        elif params["datasetList"] and job_type.create.auth != "#datasetPublic":
            first = self._catalog.find_dataset(params["datasetList"][0].get("pid", ""))
            if first is not None:
                v4["ownerGroup"] = first.get("ownerGroup")
        return v4

    async def create(self, caller: Caller, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise nest_error(400, ["body must be an object"])
        errors = dtos.check(body, dtos.JOB_CREATE_V4)
        if errors:
            raise nest_error(400, errors)
        job_type = self._job_type(body["type"])
        job = self._authorise_create(caller, body, job_type)
        datasets = [
            self._catalog.find_dataset(entry["pid"]) or {}
            for entry in job["jobParams"].get("datasetList", [])
        ]
        for action in job_type.create.actions:
            if isinstance(action, ValidateAction):
                self._validate(action, body, datasets)
        self._store.jobs[job["id"]] = job
        self._store.save("jobs")
        context = {"request": body, "job": job, "datasets": datasets, "env": self._config.env}
        for action in job_type.create.actions:
            if isinstance(action, UrlAction):
                await self._call_url(action, context, job["id"])
        return job

    def _authorise_create(
        self, caller: Caller, body: dict[str, Any], job_type: JobTypeConfig
    ) -> dict[str, Any]:
        """instanceAuthorizationJobCreate: ownership rules, datasetList checks, auth rule."""
        params = dict(body["jobParams"])
        status_message = params.pop("jobStatusMessage", None)
        job_params = params if status_message else dict(body["jobParams"])
        if "datasetList" in body["jobParams"]:
            job_params["datasetList"] = self._checked_dataset_list(body["jobParams"])
        privileged = caller.manages_everything
        owner_group = body.get("ownerGroup")
        if privileged:
            owner_user = body.get("ownerUser")
            if not owner_group and not owner_user and not body.get("contactEmail"):
                raise status_error(400, "Contact email should be specified for an anonymous job.")
            contact = body.get("contactEmail") or caller.email
        else:
            if not owner_group:
                raise status_error(400, "Invalid new job. Owner group should be specified.")
            if body.get("ownerUser") and body["ownerUser"] != caller.username:
                raise status_error(
                    400, "Invalid new job. User owning the job should match user logged in."
                )
            if owner_group not in caller.groups:
                raise status_error(400, "Invalid new job. User needs to belong to job owner group.")
            owner_user = caller.username
            contact = body.get("contactEmail") or caller.email
        auth = job_type.create.auth
        if auth in _DATASET_AUTH and "datasetList" not in body["jobParams"]:
            raise status_error(400, "Dataset ids list was not provided in jobParams")
        if not privileged and not self._may_create(caller, auth, owner_group, job_params):
            raise nest_error(403, "Unauthorized to create this job.")
        now = iso(self._clock())
        job_id = str(uuid.uuid4())
        return {
            "_id": job_id,
            "id": job_id,
            "ownerUser": owner_user,
            "ownerGroup": owner_group,
            "accessGroups": [],
            "type": body["type"],
            "statusCode": status_message or DEFAULT_STATUS_CODE,
            "statusMessage": status_message or DEFAULT_STATUS_MESSAGE,
            "jobParams": job_params,
            "contactEmail": contact,
            "configVersion": self._config.configVersion,
            "jobResultObject": {},
            "createdBy": caller.username,
            "updatedBy": caller.username,
            "createdAt": now,
            "updatedAt": now,
        }

    def _may_create(
        self, caller: Caller, auth: str, owner_group: str | None, params: dict[str, Any]
    ) -> bool:
        datasets = [
            self._catalog.find_dataset(e["pid"]) or {} for e in params.get("datasetList", [])
        ]
        if auth in ("#all", "#authenticated"):
            return True
        if auth == "#datasetPublic":
            return all(d.get("isPublished") for d in datasets)
        if auth == "#datasetAccess":
            return all(
                d.get("isPublished")
                or d.get("ownerGroup") == owner_group
                or owner_group in (d.get("accessGroups") or [])
                for d in datasets
            )
        if auth == "#datasetOwner":
            return all(d.get("ownerGroup") == owner_group for d in datasets)
        if auth.startswith("#"):  # #jobAdmin and unknown rules: admins only
            return False
        return auth in caller.groups

    def _checked_dataset_list(self, job_params: dict[str, Any]) -> list[dict[str, Any]]:
        """validateDatasetList: shape, existence of the pids and of the named files."""
        entries = job_params.get("datasetList")
        if not isinstance(entries, list):
            raise status_error(400, "Invalid dataset list")
        if not entries:
            raise status_error(400, "List of passed datasets is empty.")
        for entry in entries:
            if not isinstance(entry, dict) or set(entry) != {"pid", "files"}:
                raise status_error(
                    400, "Dataset list is expected to contain sets of pid and files."
                )
            if not isinstance(entry["pid"], str):
                raise status_error(400, "In datasetList each 'pid' field should be a string.")
            if not isinstance(entry["files"], list):
                raise status_error(400, "In datasetList each 'files' field should be an array.")
        missing = [e["pid"] for e in entries if self._catalog.find_dataset(e["pid"]) is None]
        if missing:
            raise status_error(400, f"Datasets with pid {','.join(missing)} do not exist.")
        for entry in entries:
            known = {
                f["path"]
                for block in self._catalog.origdatablocks_of(entry["pid"])
                for f in block["dataFileList"]
            }
            if not set(entry["files"]) <= known:
                raise status_error(400, "At least one requested file could not be found.")
        return entries

    def _validate(
        self, action: ValidateAction, request: dict[str, Any], datasets: list[dict[str, Any]]
    ) -> None:
        failure = validation_failure(request, action.request)
        if failure:
            raise status_error(400, failure)
        if action.datasets:
            if not datasets:
                raise status_error(400, "'jobParams.datasetList' is required.")
            for dataset in datasets:
                failure = validation_failure(dataset, action.datasets)
                if failure:
                    raise status_error(400, failure)

    async def _call_url(self, action: UrlAction, context: dict[str, Any], job_id: str) -> None:
        """URLJobAction.perform: url, headers and body come from the job config only."""
        url = render_template(action.url, context)
        headers = {k: render_template(v, context) for k, v in action.headers.items()}
        body = render_template(action.body, context) if action.body is not None else None
        try:
            response = await self._http.request(action.method, url, headers=headers, content=body)
        except httpx.HTTPError as exc:
            log.warning("job %s: url action %s %s failed: %s", job_id, action.method, url, exc)
            if not action.ignoreErrors:
                raise internal_error() from exc
            return
        if response.is_success or action.ignoreErrors:
            return
        log.warning("job %s: url action %s returned %s", job_id, url, response.status_code)
        raise status_error(
            response.status_code,
            f"A remote URL call failed with response: {response.text}",
        )

    # --- read and update ------------------------------------------------------------

    def readable(self, caller: Caller, job_id: str) -> dict[str, Any]:
        job = self._store.jobs.get(job_id)
        if job is None:
            raise status_error(400, "Invalid job id.")
        may_read = (
            caller.manages_everything
            or job.get("ownerUser") == caller.username
            or job.get("ownerGroup") in caller.groups
        )
        if not may_read:
            raise nest_error(403, "Unauthorized to get this job.")
        return job

    def map_v3_update(self, job_id: str, body: Any) -> dict[str, Any]:
        """UpdateJobV3MappingInterceptor: unknown id first, then v3 -> v4 fields."""
        job = self._store.jobs.get(job_id)
        if job is None:
            raise status_error(400, "Invalid job id.")
        if not isinstance(body, dict):
            raise nest_error(400, ["body must be an object"])
        errors = dtos.check(body, dtos.JOB_UPDATE_V3)
        if errors:
            raise nest_error(400, errors)
        result = body.get("jobResultObject")
        if body.get("executionTime"):
            result = {**(result or {}), "executionTime": body["executionTime"]}
        v4: dict[str, Any] = {
            "statusCode": body.get("jobStatusMessage") or job.get("statusCode"),
            "statusMessage": body.get("jobStatusMessage") or job.get("statusMessage"),
        }
        if result is not None:
            v4["jobResultObject"] = result
        return v4

    def update(self, caller: Caller, job_id: str, body: Any, merge_patch: bool) -> dict:
        if not isinstance(body, dict):
            raise nest_error(400, ["body must be an object"])
        errors = dtos.check(body, dtos.JOB_UPDATE_V4)
        if errors:
            raise nest_error(400, errors)
        job = self._store.jobs.get(job_id)
        if job is None:
            raise status_error(400, "Invalid job id.")
        job_type = self._job_type(job["type"])
        if not self._may_update(caller, job, job_type.update.auth):
            raise nest_error(403, "Unauthorized to update this job.")
        if merge_patch:
            result = body.get("jobResultObject")
            if isinstance(result, dict):
                body = {**body, "jobResultObject": {**job.get("jobResultObject", {}), **result}}
        job.update({k: v for k, v in body.items() if v is not None})
        job["updatedBy"] = caller.username
        job["updatedAt"] = iso(self._clock())
        self._store.save("jobs")
        return job

    @staticmethod
    def _may_update(caller: Caller, job: dict[str, Any], auth: str) -> bool:
        if caller.manages_everything or auth == "#all":
            return True
        if auth == "#jobOwnerUser":
            return job.get("ownerUser") == caller.username
        if auth == "#jobOwnerGroup":
            return job.get("ownerGroup") in caller.groups
        return not auth.startswith("#") and auth in caller.groups
