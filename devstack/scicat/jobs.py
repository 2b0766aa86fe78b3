"""Job logic: create (v4 and the v3 mapping), read, list, update, and job actions.

Follows SciCatProject/backend v4.28 `src/jobs/jobs.controller.utils.ts`,
`jobs.v4.controller.ts`, `jobs.controller.ts` and the v3 mapping interceptors:

- the PoliciesGuard checks the endpoint ability first (403 "Forbidden resource"),
  then the body is validated (400), then `instanceAuthorizationJobCreate` /
  `updateJob` apply the job rules (see `access.Caller`);
- a job is saved (statusCode "jobSubmitted") before its `url` actions run inside
  the same request: a failing action becomes the creator's reply while the job
  stays saved. A non-2xx answer gives `{"status", "message": "A remote URL call
  failed with response: ..."}` with the remote status; a network or template
  error gives 400 "Invalid job input. Job '<type>' unable to perform action
  'url' due to <JS error>" (`performActions`). No timeout of SciCat's own: undici's.
"""

from __future__ import annotations

import copy
import json
import logging
import uuid
from typing import Any
from urllib.parse import urlsplit

import httpx

from devstack.scicat import dtos
from devstack.scicat.access import DATASET_JOB_AUTH, Caller
from devstack.scicat.catalog import Catalog, Clock, iso, merge_patch
from devstack.scicat.config import Account
from devstack.scicat.errors import forbidden_resource, nest_error, status_error
from devstack.scicat.handlebars import TemplateError, compile_template, encode_uri
from devstack.scicat.jobconfig import (
    JobConfig,
    JobTypeConfig,
    UrlAction,
    ValidateAction,
    validation_failure,
)
from devstack.scicat.store import StateStore
from devstack.scicat.wherefilter import matches

log = logging.getLogger("devstack.scicat.jobs")

DEFAULT_STATUS_CODE = "jobSubmitted"
DEFAULT_STATUS_MESSAGE = "Job submitted."
# OutputJobDto's keys (ALLOWED_JOB_KEYS) plus the filter words (ALLOWED_JOB_FILTER_KEYS).
_FILTER_KEYS = {
    "type", "jobParams", "ownerUser", "ownerGroup", "contactEmail", "id", "statusCode",
    "statusMessage", "configVersion", "jobResultObject", "createdBy", "updatedBy",
    "createdAt", "updatedAt", "where", "$in", "$or", "$and", "$nor", "$match", "$eq", "$gt",
    "$gte", "$lt", "$lte", "$ne", "$nin", "$not", "$exists", "$regex", "$options", "include",
    "limits", "limit", "skip", "sort", "fields",
}  # fmt: skip
_ARBITRARY_FIELDS = {"scientificMetadata", "jobParameters", "jobParams", "jobResultObject"}
# jobV3toV4FieldMap (src/jobs/types/jobs-filter-content.ts)
_V3_TO_V4 = {
    "emailJobInitiator": "contactEmail",
    "creationTime": "createdAt",
    "jobStatusMessage": "statusCode",
    "executionTime": "jobParams.executionTime",
    "jobParams.username": "ownerUser",
    "datasetList": "jobParams.datasetList",
}


def _get(document: Any, dotted: str) -> Any:
    value = document
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def job_v3_reply(job: dict[str, Any]) -> dict[str, Any]:
    """OutputJobV3Dto: v4 fields mapped back; fields SciCat leaves undefined are omitted."""
    params = dict(job.get("jobParams") or {})
    mapped_params = {f"jobParams.{k}" for k in params} & set(_V3_TO_V4.values())
    reply: dict[str, Any] = {
        "_id": job.get("_id"),
        "id": job.get("id"),
        "emailJobInitiator": job.get("emailJobInitiator") or _get(job, "contactEmail"),
        "type": job.get("type"),
        "creationTime": _get(job, "createdAt"),
        "executionTime": _get(job, "jobParams.executionTime"),
        "jobParams": {
            "username": job.get("ownerUser"),
            **{k: v for k, v in params.items() if f"jobParams.{k}" not in mapped_params},
        },
        "jobStatusMessage": _get(job, "statusCode"),
        "datasetList": _get(job, "jobParams.datasetList"),
        "jobResultObject": job.get("jobResultObject"),
    }
    if reply["jobParams"]["username"] is None:
        del reply["jobParams"]["username"]
    return {k: v for k, v in reply.items() if v is not None}


def _js_error(exc: BaseException, url: str) -> str:
    """How Node prints the error a url action raised (`${err}`)."""
    if isinstance(exc, TemplateError):
        text = str(exc)
        return text if text.startswith("InvalidCharacterError") else f"Error: {text}"
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return f"TypeError: Failed to parse URL from {url}"
    return "TypeError: fetch failed"


class Jobs:
    def __init__(
        self,
        store: StateStore,
        catalog: Catalog,
        job_config: JobConfig,
        accounts: dict[str, Account],
        template_env: dict[str, str],
        http: httpx.AsyncClient,
        clock: Clock,
    ) -> None:
        self._store = store
        self._catalog = catalog
        self._config = job_config
        self._accounts = accounts
        self._env = template_env
        self._http = http
        self._clock = clock

    def _job_type(self, job_type: Any) -> JobTypeConfig:
        found = self._config.get(job_type) if isinstance(job_type, str) else None
        if found is None:
            type_text = "undefined" if job_type is None else str(job_type)
            raise status_error(400, f"Invalid job type: {type_text}")
        return found

    # --- create -----------------------------------------------------------------------

    def check_may_create(self, caller: Caller) -> None:
        """PoliciesGuard: endpoint ability JobCreate."""
        if not caller.may_create_jobs(self._config):
            raise forbidden_resource()

    def map_v3_create(self, caller: Caller, body: Any) -> dict[str, Any]:
        """CreateJobV3MappingInterceptor: a v3 body -> a v4 CreateJobDto (not validated as v3)."""
        body = body if isinstance(body, dict) else {}
        job_type = self._job_type(body.get("type"))
        given = body.get("jobParams") if isinstance(body.get("jobParams"), dict) else {}
        given = {k: v for k, v in given.items() if k != "datasetList"}
        params: dict[str, Any] = {"datasetList": body.get("datasetList") or [], **given}
        if body.get("executionTime"):
            params["executionTime"] = body["executionTime"]
        if body.get("jobStatusMessage"):
            params["jobStatusMessage"] = body["jobStatusMessage"]
        v4: dict[str, Any] = {
            "type": body.get("type"),
            "jobParams": params,
            "contactEmail": body.get("emailJobInitiator") or caller.email,
        }
        job_user = caller.username, list(caller.groups)
        if "username" in params:
            account = self._accounts.get(params["username"])
            job_user = (params["username"], list(account.groups)) if account else None
        if job_user:
            v4["ownerUser"] = job_user[0]
        user_groups = job_user[1] if job_user else []
        if "ownerGroup" in params:
            v4["ownerGroup"] = params["ownerGroup"]
        elif isinstance(params["datasetList"], list):
            entries = [e for e in params["datasetList"] if isinstance(e, dict)]
            if job_type.create.auth == "#datasetAccess":
                all_published = True
                groups: list[list[Any]] = []
                for entry in entries:
                    if entry.get("pid"):
                        dataset = self._catalog.find_dataset(entry["pid"]) or {}
                        all_published = all_published and dataset.get("isPublished") is True
                        groups.append(
                            [*(dataset.get("accessGroups") or []), dataset.get("ownerGroup")]
                        )
                common = _intersection([*groups, user_groups])
                if all_published and user_groups:
                    v4["ownerGroup"] = user_groups[0]
                elif common:
                    v4["ownerGroup"] = common[0]
            elif job_type.create.auth != "#datasetPublic" and params["datasetList"]:
                first = params["datasetList"][0]
                pid = first.get("pid") if isinstance(first, dict) else None
                dataset = self._catalog.find_dataset(pid) if isinstance(pid, str) else None
                if dataset and dataset.get("ownerGroup") is not None:
                    v4["ownerGroup"] = dataset["ownerGroup"]
        return v4

    async def create(self, caller: Caller, body: Any) -> dict[str, Any]:
        """POST /api/v4/jobs after the guard: validation, authorisation, save, actions."""
        if not isinstance(body, dict):
            raise nest_error(400, ["an unknown value was passed to the validate function"])
        errors = dtos.check(body, dtos.JOB_CREATE_V4)
        if errors:
            raise nest_error(400, errors)
        job = self._authorise_create(caller, body)
        job_type = self._job_type(body["type"])
        datasets = [
            copy.deepcopy(self._catalog.find_dataset(entry["pid"]) or {})
            for entry in job["jobParams"].get("datasetList", [])
        ] if "datasetList" in body["jobParams"] else []  # fmt: skip
        for action in job_type.create.actions:
            if isinstance(action, ValidateAction):
                self._validate(action, body, datasets)
        self._store.jobs[job["id"]] = job
        self._store.save("jobs")
        context = {"request": body, "env": self._env, "datasets": datasets, "job": job}
        for action in job_type.create.actions:
            if isinstance(action, UrlAction):
                await self._call_url(action, context)
        return job

    def _authorise_create(self, caller: Caller, body: dict[str, Any]) -> dict[str, Any]:
        """instanceAuthorizationJobCreate."""
        job_type = self._job_type(body["type"])
        given_params: dict[str, Any] = body["jobParams"]
        status_message = given_params.get("jobStatusMessage")
        params = (
            {k: v for k, v in given_params.items() if k != "jobStatusMessage"}
            if status_message
            else dict(given_params)
        )
        dataset_list: list[dict[str, Any]] = []
        if "datasetList" in given_params:
            dataset_list = self._checked_dataset_list(given_params)
            params["datasetList"] = dataset_list
        owner_group: str | None = None
        owner_user: str | None = None
        job_user: tuple[str, tuple[str, ...], str] | None = None  # username, groups, email
        if caller.may_create_any_job:
            if body.get("ownerUser"):
                if body["ownerUser"] != caller.username:
                    account = self._accounts.get(body["ownerUser"])
                    if account is not None:
                        job_user = (body["ownerUser"], tuple(account.groups), account.email)
                    else:
                        log.info("Owner user was not found, using current user instead.")
                    owner_user = job_user[0] if job_user else caller.username
                else:
                    owner_user = caller.username
            if body.get("ownerGroup"):
                owner_group = body["ownerGroup"]
            if (
                not body.get("ownerGroup")
                and not body.get("ownerUser")
                and not body.get("contactEmail")
            ):
                raise status_error(400, "Contact email should be specified for an anonymous job.")
            contact = body.get("contactEmail") or (job_user[2] if job_user else caller.email)
        else:
            if not body.get("ownerGroup"):
                raise status_error(400, "Invalid new job. Owner group should be specified.")
            if body.get("ownerUser") and body["ownerUser"] != caller.username:
                raise status_error(
                    400, "Invalid new job. User owning the job should match user logged in."
                )
            owner_user = caller.username
            contact = body.get("contactEmail") or caller.email
            if body["ownerGroup"] not in caller.groups:
                raise status_error(400, "Invalid new job. User needs to belong to job owner group.")
            owner_group = body["ownerGroup"]
        auth = job_type.create.auth
        no_access = 0
        if auth in DATASET_JOB_AUTH:
            if "datasetList" not in given_params:
                raise status_error(400, "Dataset ids list was not provided in jobParams")
            if auth == "#datasetOwner" and (
                not caller.is_admin and not body.get("ownerGroup") and not body.get("ownerUser")
            ):
                raise status_error(401, "User not authenticated")
            pids = [entry["pid"] for entry in dataset_list]
            allowed = self._dataset_rule(auth, caller, owner_group, job_user)
            found = [self._catalog.find_dataset(pid) for pid in set(pids)]
            no_access = len(pids) - sum(1 for d in found if d is not None and allowed(d))
        may_create = (
            (caller.may_create_any_job and caller.is_admin)
            or (caller.may_create_any_job and no_access == 0)
            or (
                caller.may_create_job_by_configuration(job_type)
                and no_access == 0
                and auth != "#jobAdmin"
            )
        )
        if not may_create:
            raise nest_error(403, "Unauthorized to create this job.")
        now = iso(self._clock())
        job_id = str(uuid.uuid4())
        job: dict[str, Any] = {"_id": job_id, "id": job_id}
        if owner_user is not None:
            job["ownerUser"] = owner_user
        if owner_group is not None:
            job["ownerGroup"] = owner_group
        job |= {
            "accessGroups": [],
            "isPublished": False,
            "type": body["type"],
            "statusCode": status_message or DEFAULT_STATUS_CODE,
            "statusMessage": status_message or DEFAULT_STATUS_MESSAGE,
            "jobParams": params,
            "contactEmail": contact or "",
            "configVersion": self._config.configVersion,
            "jobResultObject": {},
            "createdBy": caller.username,
            "updatedBy": caller.username,
            "createdAt": now,
            "updatedAt": now,
        }
        return job

    @staticmethod
    def _dataset_rule(auth, caller, owner_group, job_user):
        """The `datasetsWhere` of instanceAuthorizationJobCreate as a predicate."""
        user_groups = set(job_user[1]) if job_user else set()
        same_owner = (
            (not job_user and owner_group)
            or (job_user and caller.username == job_user[0])
            or (job_user and owner_group in user_groups)
        )

        def access(dataset: dict[str, Any]) -> bool:
            if auth == "#datasetPublic":
                return dataset.get("isPublished") is True
            groups = set(dataset.get("accessGroups") or [])
            published = dataset.get("isPublished") is True
            if auth == "#datasetAccess":
                if same_owner:
                    return (
                        dataset.get("ownerGroup") == owner_group
                        or owner_group in groups
                        or published
                    )
                if job_user and not owner_group:
                    return (
                        dataset.get("ownerGroup") in user_groups
                        or bool(groups & user_groups)
                        or published
                    )
                if job_user:
                    return (
                        (dataset.get("ownerGroup") == owner_group and owner_group in user_groups)
                        or (owner_group in groups and bool(groups & user_groups))
                        or published
                    )
                return published
            # #datasetOwner
            if same_owner:
                return dataset.get("ownerGroup") == owner_group
            if job_user and not owner_group:
                return dataset.get("ownerGroup") in user_groups
            if job_user:
                return dataset.get("ownerGroup") == owner_group and owner_group in user_groups
            return False

        return access

    def _checked_dataset_list(self, job_params: dict[str, Any]) -> list[dict[str, Any]]:
        """validateDatasetList: shape, existence of the pids and of the named files."""
        entries = job_params.get("datasetList")
        if not isinstance(entries, list):
            raise status_error(400, "Invalid dataset list")
        if not entries:
            raise status_error(400, "List of passed datasets is empty.")
        checked: list[dict[str, Any]] = []
        for entry in entries:
            # Object.assign(new DatasetListDto(), item): pid and files are always keys.
            keys = {"pid", "files"} | (set(entry) if isinstance(entry, dict) else set())
            if isinstance(entry, str):
                keys |= {str(i) for i in range(len(entry))}
            if keys != {"pid", "files"}:
                raise status_error(
                    400, "Dataset list is expected to contain sets of pid and files."
                )
            item = entry if isinstance(entry, dict) else {}
            if not isinstance(item.get("pid"), str):
                raise status_error(400, "In datasetList each 'pid' field should be a string.")
            if not isinstance(item.get("files"), list):
                raise status_error(400, "In datasetList each 'files' field should be an array.")
            checked.append({"pid": item["pid"], "files": item["files"]})
        missing = [e["pid"] for e in checked if self._catalog.find_dataset(e["pid"]) is None]
        if missing:
            raise status_error(400, f"Datasets with pid {','.join(missing)} do not exist.")
        self._check_files(checked)
        return checked

    def _check_files(self, entries: list[dict[str, Any]]) -> None:
        """checkDatasetFiles, including its quirk: the origdatablocks of the last dataset
        loaded are the reference for every dataset that names files."""
        to_check = [e for e in entries if e["files"]]
        if not to_check:
            return
        pids = {e["pid"] for e in to_check}
        last = [pid for pid in self._catalog.dataset_pids() if pid in pids][-1:]
        reference = {
            f["path"]
            for pid in last
            for block in self._catalog.origdatablocks_of(pid)
            for f in block["dataFileList"]
        }
        problems = [
            {"pid": e["pid"], "nonExistFiles": [f for f in e["files"] if f not in reference]}
            for e in to_check
        ]
        problems = [p for p in problems if p["nonExistFiles"]]
        if problems:
            raise status_error(
                400,
                "At least one requested file could not be found.",
                error=json.dumps(problems, separators=(",", ":")),
            )

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

    async def _call_url(self, action: UrlAction, context: dict[str, Any]) -> None:
        """URLJobAction.perform, wrapped as performActions wraps it."""
        job = context["job"]
        url = ""
        try:
            url = encode_uri(compile_template(action.url)(context))
            headers = {k: compile_template(v)(context) for k, v in action.headers.items()}
            body = compile_template(action.body)(context) if action.body else None
            response = await self._http.request(action.method, url, headers=headers, content=body)
        except (TemplateError, httpx.HTTPError) as exc:
            log.warning("(Job %s) url action %s failed: %r", job["id"], url, exc)
            if action.ignoreErrors:
                return
            reason = _js_error(exc, url)
            msg = f"Invalid job input. Job '{job['type']}' unable to perform action 'url'"
            msg += f" due to {reason}"
            raise status_error(400, msg) from exc
        if response.is_success or action.ignoreErrors:
            return
        log.warning("(Job %s) Request for %s returned %s", job["id"], url, response.status_code)
        raise status_error(
            response.status_code, f"A remote URL call failed with response: {response.text}"
        )

    # --- read ------------------------------------------------------------------------

    def readable(self, caller: Caller, job_id: str) -> dict[str, Any]:
        """getJobById: 400 "Invalid job id." when unknown, 403 when not readable."""
        job = self._store.jobs.get(job_id)
        if job is None:
            raise status_error(400, "Invalid job id.")
        self._job_type(job["type"])
        if not caller.may_read_job(job):
            raise nest_error(403, "Unauthorized to get this job.")
        return job

    def find(self, caller: Caller, filter_text: str | None) -> list[dict[str, Any]]:
        """GET /api/v4/jobs?filter=...: where, limits (limit, skip, sort), access-filtered."""
        parsed = _parse_filter(filter_text)
        where = parsed.get("where") or {}
        limits = parsed.get("limits") or {}
        if not isinstance(where, dict) or not isinstance(limits, dict):
            raise status_error(400, "filter where and limits must be objects")
        try:
            found = [
                job
                for job in self._store.jobs.values()
                if caller.may_read_job(job) and matches(job, where)
            ]
        except (ValueError, TypeError) as exc:
            raise status_error(400, str(exc)) from exc
        for key, direction in reversed(list((limits.get("sort") or {}).items())):
            found.sort(key=lambda j, k=key: str(_get(j, k) or ""), reverse=direction == "desc")
        skip = int(limits.get("skip") or 0)
        limit = int(limits.get("limit") or 0)
        found = found[skip:]
        return found[:limit] if limit else found

    # --- update ------------------------------------------------------------------------

    def check_may_update(self, caller: Caller) -> None:
        """PoliciesGuard: endpoint ability JobUpdate."""
        if not caller.may_update_jobs(self._config):
            raise forbidden_resource()

    def map_v3_update(self, job_id: str, body: Any) -> dict[str, Any]:
        """UpdateJobV3MappingInterceptor: unknown id first, then v3 -> v4; other fields dropped."""
        job = self._store.jobs.get(job_id)
        if job is None:
            raise status_error(400, "Invalid job id.")
        body = body if isinstance(body, dict) else {}
        result = body.get("jobResultObject")
        if body.get("executionTime"):
            result = {
                **(result if isinstance(result, dict) else {}),
                "executionTime": body["executionTime"],
            }
        v4: dict[str, Any] = {
            "statusCode": body.get("jobStatusMessage") or job.get("statusCode"),
            "statusMessage": body.get("jobStatusMessage") or job.get("statusMessage"),
        }
        if result is not None:
            v4["jobResultObject"] = result
        return v4

    def update(self, caller: Caller, job_id: str, body: Any, *, is_merge_patch: bool) -> dict:
        """updateJob after the guard: validation, authorisation, merge, save."""
        if not isinstance(body, dict):
            raise nest_error(400, ["an unknown value was passed to the validate function"])
        errors = dtos.check(body, dtos.JOB_UPDATE_V4)
        if errors:
            raise nest_error(400, errors)
        job = self._store.jobs.get(job_id)
        if job is None:
            raise status_error(400, "Invalid job id.")
        job_type = self._job_type(job["type"])
        if not caller.may_update_job(job, job_type):
            raise nest_error(403, "Unauthorized to update this job.")
        for action in job_type.update.actions:
            if isinstance(action, ValidateAction):
                failure = validation_failure(body, action.request)
                if failure:
                    raise status_error(400, failure)
        fields = merge_patch(job, body) if is_merge_patch else body
        result = fields.get("jobResultObject")
        if isinstance(result, dict) and result.get("executionTime"):
            job["jobParams"] = {
                **job.get("jobParams", {}),
                "executionTime": result["executionTime"],
            }
            result = {k: v for k, v in result.items() if k != "executionTime"}
        job["statusCode"] = fields.get("statusCode")
        job["statusMessage"] = fields.get("statusMessage")
        if result is not None:
            job["jobResultObject"] = result
        job["updatedBy"] = caller.username
        job["updatedAt"] = iso(self._clock())
        self._store.save("jobs")
        return job


def _intersection(arrays: list[list[Any]]) -> list[Any]:
    if not arrays:
        return []
    result = arrays[0]
    for other in arrays[1:]:
        result = [x for x in result if x in other]
    return result


def _flatten_keys(value: Any, prefix: str = "") -> list[str]:
    if isinstance(value, dict) and value:
        keys: list[str] = []
        for key, inner in value.items():
            keys += _flatten_keys(inner, f"{prefix}.{key}" if prefix else str(key))
        return keys
    if isinstance(value, list) and value and any(isinstance(v, dict) for v in value):
        keys = []
        for index, inner in enumerate(value):
            keys += _flatten_keys(inner, f"{prefix}.{index}")
        return keys
    return [prefix] if prefix else []


def _parse_filter(filter_text: str | None) -> dict[str, Any]:
    """FilterValidationPipe: JSON, and only known keys (anything below jobParams goes)."""
    try:
        parsed = json.loads(filter_text) if filter_text else {}
    except ValueError as exc:
        raise nest_error(400, f"Invalid JSON in filter: {exc}") from exc
    if not isinstance(parsed, dict):
        return {}
    for key in _flatten_keys(parsed):
        free = False
        for part in key.split("."):
            if part not in _FILTER_KEYS and not part.isdigit() and not free:
                raise nest_error(400, f"Property {key} should not exist in the filter object")
            free = free or part in _ARBITRARY_FIELDS
    return parsed
