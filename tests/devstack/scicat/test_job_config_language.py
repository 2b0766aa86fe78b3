"""Job configs are SciCat's: Handlebars with SciCat's helpers, nothing expanded at load.

Follows SciCatProject/backend v4.28: src/common/handlebars-helpers.ts (the
helpers), src/config/job-config/handlebar-utils.ts (compileJobTemplate),
src/config/job-config/actions/urlaction/urlaction.ts (url, headers, body are
templates; encodeURI on the url), src/config/job-config/jobconfig.service.ts
(loading) and jobconfig.interface.ts (`env` in the template context).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import httpx
import pytest

from devstack.scicat.app import create_app
from devstack.scicat.config import EXAMPLE_JOB_CONFIG, config_from_env, load_job_config
from devstack.scicat.handlebars import TemplateError, render
from devstack.scicat.jobconfig import parse_job_config
from tests.conftest import raw_dataset

JOB = {
    "_id": "j-1",
    "id": "j-1",
    "type": "archive",
    "createdBy": "user1",
    "contactEmail": "user1@example.org",
    "statusCode": "jobSubmitted",
    "createdAt": "2024-05-01T12:00:00.000Z",
    "jobParams": {"datasetList": [{"pid": "20.500.11935/a b", "files": []}]},
}


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ('{{{ base64enc (concat env.U ":" env.P) }}}', base64.b64encode(b"scicat:pa=ss").decode()),
        ("{{ env.P }}", "pa&#x3D;ss"),
        ("{{{ env.P }}}", "pa=ss"),
        ("{{ urlencode job.jobParams.datasetList.0.pid }}", "20.500.11935%2Fa%20b"),
        ('{{ default job.missing "none" }}', "none"),
        ('{{#if (eq job.type "archive")}}A{{else}}B{{/if}}', "A"),
        (
            "{{#if (or false 'yes')}}1{{/if}}{{#if (and true 1)}}2{{/if}}"
            "{{#if (not 'no')}}3{{/if}}",
            "123",
        ),
        ('{{#if (matches job.type "^ARCH" "i")}}m{{/if}}', "m"),
        ("{{ keyToWord 'archiveStatusMessage' }}", "Archive Status Message"),
        (
            "{{{ unwrapJSON job.jobParams }}}",
            "Dataset List: <ul style='padding-left: 1em'><li style='margin-bottom: 1em'>"
            "Pid: 20.500.11935/a b<br/>Files: <ul style='padding-left: 1em'></ul></li></ul>",
        ),
        ("{{ base64dec 'c2NpY2F0' }}", "scicat"),
        ('{{ formatUnit 52428800 "B" precision=1 }}', "50 MiB"),
        ("{{#each job.jobParams.datasetList}}{{@index}}:{{pid}};{{/each}}", "0:20.500.11935/a b;"),
        ("{{ job.jobParams }} {{ job.nothing }}|{{ true }}", "[object Object] |true"),
    ],
)
def test_scicat_helpers_render_as_in_handlebars_js(template: str, expected: str) -> None:
    """Each of SciCat's helpers, and handlebars' escaping and JS stringification."""
    context = {"job": JOB, "env": {"U": "scicat", "P": "pa=ss"}}
    assert render(template, context) == expected


def test_jsonify_and_job_v3_are_json_stringify_with_three_spaces() -> None:
    """jsonify is JSON.stringify(x, null, 3); job_v3 maps the job to the v3 shape."""
    rendered = render("{{{ jsonify (job_v3 job) }}}", {"job": JOB})
    assert rendered.startswith('{\n   "id": "j-1",\n   "emailJobInitiator": "user1@example.org"')
    assert json.loads(rendered) == {
        "id": "j-1",
        "emailJobInitiator": "user1@example.org",
        "type": "archive",
        "creationTime": "2024-05-01T12:00:00.000Z",
        "jobParams": {
            "datasetList": [{"pid": "20.500.11935/a b", "files": []}],
            "username": "user1",
        },
        "jobStatusMessage": "jobSubmitted",
        "datasetList": [{"pid": "20.500.11935/a b", "files": []}],
    }


def test_a_helper_that_scicat_lacks_is_missing() -> None:
    """The stand-in's old basicAuth is not a SciCat helper: handlebars says "Missing helper"."""
    with pytest.raises(TemplateError, match='Missing helper: "basicAuth"'):
        render("{{{ basicAuth 'u' 'p' }}}", {})


def test_shell_style_variables_are_not_expanded_when_loading() -> None:
    """SciCat loads YAML as it is: `${VAR}` stays text."""
    config = parse_job_config(
        """
configVersion: v1
jobs:
  - jobType: archive
    create:
      auth: "#all"
      actions: [{actionType: url, url: "${ARCHIVER_JOBS_URL:-http://x}"}]
    update: {auth: "#jobAdmin"}
"""
    )
    assert config.jobs[0].create.actions[0].url == "${ARCHIVER_JOBS_URL:-http://x}"


def test_an_unknown_action_type_fails_loading() -> None:
    """jobconfig.service.ts: "Unknown action type ..."."""
    with pytest.raises(ValueError, match="Unknown action type teleport"):
        parse_job_config(
            "configVersion: v1\njobs:\n  - jobType: a\n    create: {auth: '#all', actions:"
            " [{actionType: teleport}]}\n    update: {auth: '#all'}\n"
        )


def test_the_example_config_builds_basic_auth_from_scicats_env() -> None:
    """jobconfig.example.yaml (the dev stack's file) renders its url action from `env`."""
    config = load_job_config(EXAMPLE_JOB_CONFIG)
    action = next(a for a in config.get("archive").create.actions if a.actionType == "url")
    env = {
        "ARCHIVER_JOBS_URL": "http://gw/archiver/jobs",
        "ARCHIVER_JOB_USER": "scicat-jobs",
        "ARCHIVER_JOB_PASSWORD": "s3cret",
    }
    context = {"job": JOB, "env": env, "request": {}, "datasets": []}
    assert render(action.url, context) == "http://gw/archiver/jobs"
    assert (
        render(action.headers["Authorization"], context)
        == "Basic " + base64.b64encode(b"scicat-jobs:s3cret").decode()
    )
    assert json.loads(render(action.body or "", context))["id"] == "j-1"
    assert [j.jobType for j in config.jobs] == ["archive", "retrieve", "public"]
    assert config.get("archive").update.auth == "#jobAdmin"


async def test_template_errors_and_bad_urls_answer_400_with_the_js_error(tmp_path: Path) -> None:
    """performActions: 'Invalid job input. Job ... due to <err>' for template and URL errors."""
    job_config = parse_job_config(
        """
configVersion: v1
jobs:
  - jobType: helperless
    create:
      auth: "#datasetOwner"
      actions: [{actionType: url, url: "http://x/", headers: {A: "{{ basicAuth 'u' 'p' }}"}}]
    update: {auth: "#jobAdmin"}
  - jobType: unset_env
    create:
      auth: "#datasetOwner"
      actions: [{actionType: url, url: "{{{ env.ARCHIVER_JOBS_URL }}}"}]
    update: {auth: "#jobAdmin"}
"""
    )
    config = config_from_env({}, state_dir=tmp_path, job_config=job_config)
    transport = httpx.ASGITransport(app=create_app(config))
    async with httpx.AsyncClient(transport=transport, base_url="http://standin/api") as client:
        login = {"username": "user1", "password": "a609316768619f154ef58db4d847b75e"}
        token = (await client.post("/v3/auth/login", json=login)).json()["id"]
        headers = {"Authorization": f"Bearer {token}"}
        pid = (await client.post("/v3/Datasets", json=raw_dataset(), headers=headers)).json()["pid"]
        replies = [
            await client.post(
                "/v4/jobs",
                json={"type": t, "ownerGroup": "group1",
                      "jobParams": {"datasetList": [{"pid": pid, "files": []}]}},
                headers=headers,
            )
            for t in ("helperless", "unset_env")
        ]  # fmt: skip
    assert [r.json() for r in replies] == [
        {
            "status": 400,
            "message": "Invalid job input. Job 'helperless' unable to perform action 'url' "
            'due to Error: Missing helper: "basicAuth"',
        },
        {
            "status": 400,
            "message": "Invalid job input. Job 'unset_env' unable to perform action 'url' "
            "due to TypeError: Failed to parse URL from ",
        },
    ]
