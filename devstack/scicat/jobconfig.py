"""SciCat's job configuration (jobConfig.yaml), parsed into typed models.

Mirrors `src/config/job-config` of SciCatProject/backend (v4.28): a
`configVersion` and a list of job types, each with `create` and `update`
operations holding an `auth` rule and a list of actions. The file is plain YAML
(or JSON): nothing is expanded when it is loaded. Templates in actions are
Handlebars, rendered per job with SciCat's helpers (`devstack.scicat.handlebars`)
against `{request, job, datasets, env}`, where `env` is the process environment
(`{{{ env.ARCHIVER_JOB_PASSWORD }}}`).

Supported actions: `validate` (JSONPath -> JSON-schema subset checks on the
request and on the listed datasets) and `url` (an HTTP call whose url, headers
and body are templates). SciCat's other action types (`log`, `email`,
`rabbitmq`, `switch`, `error`) load and do nothing here; an unknown action type
fails loading, as in SciCat ("Unknown action type ...").
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

# The action creators SciCat v4.28 registers (corejobactioncreators.module.ts).
KNOWN_ACTION_TYPES = frozenset({"log", "email", "validate", "url", "rabbitmq", "switch", "error"})


class ValidateAction(BaseModel):
    """`actionType: validate`: JSONPath -> schema maps for the request and the datasets."""

    model_config = ConfigDict(extra="forbid")

    actionType: Literal["validate"]
    request: dict[str, dict[str, Any]] = Field(default_factory=dict)
    datasets: dict[str, dict[str, Any]] = Field(default_factory=dict)


class UrlAction(BaseModel):
    """`actionType: url`: SciCat calls this URL inside the job request."""

    model_config = ConfigDict(extra="forbid")

    actionType: Literal["url"]
    url: str
    method: Literal["GET", "POST", "PUT", "DELETE"] = "GET"  # SciCat's default is GET
    headers: dict[str, str] = Field(default_factory=dict)
    body: str | None = None
    ignoreErrors: bool = False


class OtherAction(BaseModel):
    """Another of SciCat's action types; accepted so real config files load, never run."""

    model_config = ConfigDict(extra="allow")

    actionType: str


JobAction = Annotated[ValidateAction | UrlAction | OtherAction, Field(union_mode="left_to_right")]


class JobOperation(BaseModel):
    """Auth rule and actions for one operation (`create` or `update`)."""

    model_config = ConfigDict(extra="allow")

    auth: str | None = None
    actions: list[JobAction] = Field(default_factory=list)


class JobTypeConfig(BaseModel):
    model_config = ConfigDict(extra="allow")

    jobType: str
    create: JobOperation
    update: JobOperation


class JobConfig(BaseModel):
    """The whole file (`configVersion` applies to every job type)."""

    model_config = ConfigDict(extra="allow")

    configVersion: str
    jobs: list[JobTypeConfig]

    def get(self, job_type: str) -> JobTypeConfig | None:
        return next((job for job in self.jobs if job.jobType == job_type), None)


def parse_job_config(text: str, source: str = "<job config>") -> JobConfig:
    """Parse YAML (or JSON) text as SciCat's JobConfigService does; ValueError when invalid."""
    data = yaml.safe_load(text)
    try:
        config = JobConfig.model_validate(data)
    except ValidationError as exc:
        msg = f"Invalid job configuration ({source}): {exc}"
        raise ValueError(msg) from exc
    seen: set[str] = set()
    for job in config.jobs:
        if job.jobType in seen:
            msg = f"Duplicate job type {job.jobType} in {source}"
            raise ValueError(msg)
        seen.add(job.jobType)
        for operation in (job.create, job.update):
            for action in operation.actions:
                if action.actionType not in KNOWN_ACTION_TYPES:
                    msg = f"Unknown action type {action.actionType} in {source}"
                    raise ValueError(msg)
    return config


def load_job_config(path: Path) -> JobConfig:
    return parse_job_config(path.read_text(encoding="utf-8"), str(path))


# --- validate action -----------------------------------------------------------


def _json_path_values(document: Any, path: str) -> list[Any]:
    """Values at a simple dotted JSONPath (`$.a.b` or `a.b`); [] when absent."""
    value = document
    for part in path.removeprefix("$").lstrip(".").split("."):
        if not isinstance(value, Mapping) or part not in value:
            return []
        value = value[part]
    return [value]


_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "boolean": (bool,),
    "object": (dict,),
    "array": (list,),
    "number": (int, float),
    "integer": (int,),
    "null": (type(None),),
}


def _matches_schema(value: Any, schema: Mapping[str, Any]) -> bool:
    """The JSON-schema keywords job configs use: const, enum, type."""
    if "const" in schema and not (
        value == schema["const"] and type(value) is type(schema["const"])
    ):
        return False
    if "enum" in schema and value not in schema["enum"]:
        return False
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        allowed = tuple(t for name in types for t in _JSON_TYPES.get(name, ()))
        is_bool_as_number = isinstance(value, bool) and "boolean" not in types
        if not isinstance(value, allowed) or is_bool_as_number:
            return False
    return True


def validation_failure(document: Any, schemas: Mapping[str, Mapping[str, Any]]) -> str | None:
    """SciCat's validate-action message for the first failing path, or None."""
    for path, schema in schemas.items():
        values = _json_path_values(document, path)
        if not values:
            return f"Invalid request. Requires '{path}'"
        if not all(_matches_schema(value, schema) for value in values):
            return f"Invalid request. Invalid value for '{path}'"
    return None
