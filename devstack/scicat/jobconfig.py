"""SciCat's job configuration (jobConfig.yaml), parsed into typed models.

Mirrors `src/config/job-config` of scicat-backend-next: a list of job types,
each with `create` and `update` operations holding an `auth` rule and a list of
actions. Supported actions: `validate` (JSONPath -> JSON-schema subset checks
on the request and on the listed datasets) and `url` (an HTTP call whose url,
headers and body are Handlebars templates). Other action types (`log`,
`email`, `rabbitmq`, ...) are accepted and do nothing here.

Beyond SciCat, `${VAR}` (or `${VAR:-default}`) in the YAML is replaced from the environment mapping
passed to `load_job_config` (so a password need not be written in the file);
SciCat's own `{{ env.VAR }}` template form works too.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_TEMPLATE_TAG = re.compile(r"\{\{(\{?)\s*(.+?)\s*\}?\}\}")


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
    """Any other SciCat action type; accepted so real config files load, never run."""

    model_config = ConfigDict(extra="allow")

    actionType: str


JobAction = Annotated[ValidateAction | UrlAction | OtherAction, Field(union_mode="left_to_right")]


class JobOperation(BaseModel):
    """Auth rule and actions for one operation (`create` or `update`)."""

    model_config = ConfigDict(extra="forbid")

    auth: str
    actions: list[JobAction] = Field(default_factory=list)


class JobTypeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    jobType: str
    create: JobOperation
    update: JobOperation


class JobConfig(BaseModel):
    """The whole file; `env` feeds `{{ env.X }}` templates and is never serialised."""

    model_config = ConfigDict(extra="forbid")

    configVersion: str
    jobs: list[JobTypeConfig]
    env: dict[str, str] = Field(default_factory=dict, exclude=True, repr=False)

    def get(self, job_type: str) -> JobTypeConfig | None:
        return next((job for job in self.jobs if job.jobType == job_type), None)


def _expand_env(text: str, env: Mapping[str, str], source: str) -> str:
    def substitute(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name not in env and default is not None:
            return default
        if name not in env:
            msg = f"{source}: environment variable {name} is referenced but not set"
            raise ValueError(msg)
        return env[name]

    return _ENV_REF.sub(substitute, text)


def parse_job_config(text: str, env: Mapping[str, str], source: str = "<job config>") -> JobConfig:
    """Parse YAML (or JSON) text, expanding `${VAR}` from `env` first."""
    data = yaml.safe_load(_expand_env(text, env, source))
    config = JobConfig.model_validate(data)
    types = [job.jobType for job in config.jobs]
    duplicates = sorted({t for t in types if types.count(t) > 1})
    if duplicates:
        msg = f"{source}: duplicate job types {duplicates}"
        raise ValueError(msg)
    return config.model_copy(update={"env": dict(env)})


def load_job_config(path: Path, env: Mapping[str, str]) -> JobConfig:
    return parse_job_config(path.read_text(encoding="utf-8"), env, str(path))


# --- Handlebars subset -------------------------------------------------------
# SciCat compiles url/headers/body with Handlebars and the helpers `jsonify`,
# `job_v3` and `urlencode`. We render the forms job configs actually use:
# `{{ a.b }}` (HTML-escaped), `{{{ a.b }}}`, `{{{ jsonify x }}}`,
# `{{{ jsonify (job_v3 job) }}}`, `{{ urlencode x }}`, and our `{{ basicAuth 'u' 'p' }}`.


def _lookup(context: Mapping[str, Any], dotted: str) -> Any:
    value: Any = context
    for part in dotted.removeprefix("this.").split("."):
        if part == "this":
            continue
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def job_v3_view(job: Mapping[str, Any]) -> dict[str, Any]:
    """SciCat's `job_v3` template helper: the v3 shape old archive systems expect."""
    job_params = dict(job.get("jobParams") or {})
    return {
        "id": job.get("id"),
        "emailJobInitiator": job.get("contactEmail"),
        "type": job.get("type"),
        "creationTime": job.get("createdAt"),
        "jobParams": {**job_params, "username": job.get("createdBy")},
        "jobStatusMessage": job.get("statusCode"),
        "datasetList": job_params.get("datasetList", []),
    }


_ARG_TOKEN = re.compile(r"\"[^\"]*\"|'[^']*'|\S+")


def _argument(token: str, context: Mapping[str, Any]) -> Any:
    """A helper argument: a quoted string literal or a path into the context."""
    if len(token) >= 2 and token[0] == token[-1] and token[0] in "'\"":
        return token[1:-1]
    return _lookup(context, token)


def _evaluate(expression: str, context: Mapping[str, Any]) -> Any:
    expression = expression.strip()
    if expression.startswith("(") and expression.endswith(")"):
        return _evaluate(expression[1:-1], context)
    helper, _, argument = expression.partition(" ")
    if helper == "jsonify" and argument:
        return json.dumps(_evaluate(argument, context), indent=3)
    if helper == "job_v3" and argument:
        return job_v3_view(_evaluate(argument, context) or {})
    if helper == "basicAuth" and argument:
        # Stand-in helper (not in SciCat): "Basic base64(user:password)".
        user, password = (_argument(token, context) for token in _ARG_TOKEN.findall(argument))
        return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    if helper == "urlencode" and argument:
        from urllib.parse import quote

        return quote(str(_evaluate(argument, context)), safe="")
    return _lookup(context, expression)


# Handlebars' escapeExpression table (note "=" and "`" too).
_HANDLEBARS_ESCAPES = str.maketrans(
    {
        "&": "&amp;",
        "<": "&lt;",
        ">": "&gt;",
        '"': "&quot;",
        "'": "&#x27;",
        "`": "&#x60;",
        "=": "&#x3D;",
    }
)


def render_template(template: str, context: Mapping[str, Any]) -> str:
    """Render the Handlebars subset above; a missing value renders as ''."""

    def substitute(match: re.Match[str]) -> str:
        value = _evaluate(match.group(2), context)
        if value is None:
            return ""
        text = value if isinstance(value, str) else json.dumps(value)
        # Double braces HTML-escape in Handlebars, triple braces do not.
        return text if match.group(1) else text.translate(_HANDLEBARS_ESCAPES)

    return _TEMPLATE_TAG.sub(substitute, template)


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
