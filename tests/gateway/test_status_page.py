"""The status page over HTTP: who gets in, what the pages show, and what they never show.

SciCat's `admin` group is the operator group here (`gateway_settings`). The
browser test (tests/e2e/test_status_page.py) drives the same pages in Chromium.
"""

import contextlib
from datetime import UTC, datetime

import httpx
import pytest
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from contracts import kv as kv_names
from contracts.events import DeadLetter
from tests.conftest import SCICAT_PASSWORDS
from tests.gateway.conftest import ROOT, Gateway
from tests.gateway.test_job_api import submitted_job

STATUS = f"{ROOT}/status"
ORIGIN = {"Origin": "http://gateway"}


@pytest.fixture(autouse=True)
async def _no_job_records(clean_js: JetStreamContext) -> None:
    with contextlib.suppress(NotFoundError):
        await clean_js.delete_key_value(kv_names.JOBS)


async def logged_in(gateway: Gateway, username: str = "admin") -> httpx.Response:
    return await gateway.http.post(
        f"{STATUS}/login",
        data={"username": username, "password": SCICAT_PASSWORDS[username]},
        headers=ORIGIN,
    )


async def test_not_logged_in_every_page_redirects_to_the_login_form(gateway: Gateway) -> None:
    """/status, a job's page and the dead letters send a visitor to the login form."""
    for path in ("", "/jobs/some-job", "/dead-letters"):
        reply = await gateway.http.get(f"{STATUS}{path}")
        assert reply.status_code == 303, path
        assert reply.headers["location"] == f"http://gateway{STATUS}/login"
    form = await gateway.http.get(f"{STATUS}/login")
    assert form.status_code == 200
    assert 'name="password"' in form.text


async def test_an_operator_logs_in_with_a_signed_strict_httponly_cookie(gateway: Gateway) -> None:
    """admin's SciCat password gets a session cookie; the jobs page lists every group's jobs."""
    job = await submitted_job(gateway, "archive", "group2", "user2")

    login = await logged_in(gateway)
    page = await gateway.http.get(STATUS)

    assert login.status_code == 303
    assert login.headers["location"] == f"http://gateway{STATUS}"
    cookie = login.headers["set-cookie"]
    assert cookie.startswith("archiver_status=")
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie
    assert "Path=/" in cookie
    assert "Max-Age=1800" in cookie
    assert page.status_code == 200
    assert f'data-job-id="{job["id"]}"' in page.text
    assert "group2" in page.text
    assert "0.0%" in page.text


async def test_a_pasted_scicat_token_logs_an_operator_in(gateway: Gateway) -> None:
    """The token field instead of a password: same session."""
    login = await gateway.http.post(
        f"{STATUS}/login", data={"token": gateway.scicat.login("admin")}, headers=ORIGIN
    )

    assert login.status_code == 303
    assert (await gateway.http.get(STATUS)).status_code == 200


async def test_a_scicat_user_who_is_no_operator_is_refused_with_a_403_page(
    gateway: Gateway,
) -> None:
    """user1 logs in to SciCat fine, but gets a page saying why they may not see the status."""
    login = await logged_in(gateway, "user1")

    assert login.status_code == 403
    assert "user1, who is not an archiver operator" in login.text
    assert "set-cookie" not in login.headers
    assert (await gateway.http.get(STATUS)).status_code == 303


async def test_a_wrong_password_shows_the_form_again_with_a_sentence(gateway: Gateway) -> None:
    reply = await gateway.http.post(
        f"{STATUS}/login", data={"username": "admin", "password": "wrong"}, headers=ORIGIN
    )

    assert reply.status_code == 401
    assert "SciCat did not accept that username and password" in reply.text
    assert "set-cookie" not in reply.headers


async def test_a_post_from_another_origin_is_refused(gateway: Gateway) -> None:
    """Login and the job forms take POSTs from the page's own origin only (CSRF)."""
    await logged_in(gateway)

    login = await gateway.http.post(
        f"{STATUS}/login",
        data={"username": "admin", "password": SCICAT_PASSWORDS["admin"]},
        headers={"Origin": "https://evil.example"},
    )
    cancel = await gateway.http.post(f"{STATUS}/jobs/some-job/cancel")

    assert login.status_code == cancel.status_code == 403
    assert "set-cookie" not in login.headers


async def test_a_forged_or_upload_token_cookie_is_no_session(gateway: Gateway) -> None:
    """An upload access token signed by the same secret is not a status page session."""
    tokens = await gateway.tokens("ingestor")

    gateway.http.cookies.set("archiver_status", tokens["access_token"])
    assert (await gateway.http.get(STATUS)).status_code == 303
    gateway.http.cookies.set("archiver_status", "not.a.jwt")
    assert (await gateway.http.get(STATUS)).status_code == 303


async def test_a_jobs_page_shows_its_datasets_and_a_cancel_button(gateway: Gateway) -> None:
    """A job in flight: each dataset's phase and percent, and a Cancel form; no Retry."""
    job = await submitted_job(gateway, "archive", "group1", "user1")
    pid = job["jobParams"]["datasetList"][0]["pid"]
    await logged_in(gateway)

    page = await gateway.http.get(f"{STATUS}/jobs/{job['id']}")
    unknown = await gateway.http.get(f"{STATUS}/jobs/no-such-job")

    assert page.status_code == 200
    assert f'data-pid="{pid}"' in page.text
    assert 'id="cancel"' in page.text
    assert 'id="retry"' not in page.text
    assert f'action="http://gateway{STATUS}/jobs/{job["id"]}/cancel"' in page.text
    assert unknown.status_code == 404


async def test_the_cancel_button_cancels_the_job_and_answers_on_its_page(
    gateway: Gateway,
) -> None:
    """The form asks for the cancel as the logged-in operator and answers with the job's page
    and the sentence; the page then reloads as a GET of the job's page."""
    job = await submitted_job(gateway, "archive", "group1", "user1")
    await logged_in(gateway)

    reply = await gateway.http.post(f"{STATUS}/jobs/{job['id']}/cancel", headers=ORIGIN)

    assert reply.status_code == 200
    assert "Cancelled by admin at " in reply.text
    assert f'content="5; url=http://gateway{STATUS}/jobs/{job["id"]}"' in reply.text
    token = gateway.scicat.login("admin")
    detail = await gateway.http.get(
        f"{ROOT}/archiver/jobs/{job['id']}", headers={"Authorization": f"Bearer {token}"}
    )
    assert detail.json()["cancel_requested_by"] == "admin"


async def test_dead_letters_are_listed_with_reasons_and_no_secrets(
    gateway: Gateway, clean_js: JetStreamContext
) -> None:
    """The reason shows; a presigned URL's signature and a password in it do not."""
    letter = DeadLetter(
        occurred_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        service="ltsmover",
        consumer="ltsmover--datablocks_created",
        subject="datablocks.created",
        stream="ARCHIVER",
        stream_seq=42,
        deliveries=12,
        reason="Cannot read https://s3.example/b/k?X-Amz-Signature=abc123&X-Amz-Credential=k",
        detail='SciCat answered {"password": "hunter2"}',
    )
    await clean_js.publish("deadletter.ltsmover", letter.model_dump_json().encode())
    await logged_in(gateway)

    page = await gateway.http.get(f"{STATUS}/dead-letters")

    assert page.status_code == 200
    assert "ltsmover--datablocks_created" in page.text
    assert "Cannot read https://s3.example/b/k?[redacted]" in page.text
    assert "abc123" not in page.text
    assert "hunter2" not in page.text
    assert "ARCHIVER #42" in page.text


async def test_logout_ends_the_session(gateway: Gateway) -> None:
    await logged_in(gateway)

    reply = await gateway.http.post(f"{STATUS}/logout", headers=ORIGIN)

    assert reply.status_code == 303
    assert (await gateway.http.get(STATUS)).status_code == 303
