"""The service account's SciCat session against a recording fake SciCat (httpx.MockTransport)."""

import asyncio
import json
from dataclasses import dataclass, field

import httpx
import pytest
from pydantic import SecretStr

from runtime.scicat import ScicatLoginFailed, ScicatSession

PATH = "v3/Datasets/20.500.11935%2Fabc"


@dataclass
class FakeScicat:
    """Logs in `archiveManager`/`pw` and records (method, raw path, Authorization)."""

    calls: list[tuple[str, str, str | None]] = field(default_factory=list)
    answers: list[httpx.Response] = field(default_factory=list)
    """Answers to the next non-login requests, in order; then 200 `{}`."""
    login_answers: list[httpx.Response] = field(default_factory=list)
    expires_in: int = 3600
    logins: int = 0

    def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.raw_path.decode()
        self.calls.append((request.method, path, request.headers.get("Authorization")))
        if path == "/api/v3/auth/login":
            assert json.loads(request.content) == {"username": "archiveManager", "password": "pw"}
            if self.login_answers:
                return self.login_answers.pop(0)
            self.logins += 1
            token = f"token-{self.logins}"
            return httpx.Response(
                201, json={"access_token": token, "id": token, "expires_in": self.expires_in}
            )
        if self.answers:
            return self.answers.pop(0)
        return httpx.Response(200, json={})


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def session_for(fake: FakeScicat, clock: Clock | None = None) -> ScicatSession:
    http = httpx.AsyncClient(
        transport=httpx.MockTransport(fake.handle), base_url="http://scicat.test/api/"
    )
    return ScicatSession(
        http, username="archiveManager", password=SecretStr("pw"), clock=clock or Clock()
    )


def authorizations(fake: FakeScicat) -> list[str | None]:
    return [auth for method, path, auth in fake.calls if not path.endswith("/auth/login")]


async def test_one_login_serves_every_request_while_the_token_is_fresh() -> None:
    """Three requests, one login; the token goes out as a Bearer header beside the caller's."""
    fake = FakeScicat()
    session = session_for(fake)

    for _ in range(3):
        response = await session.request("GET", PATH, headers={"Accept": "application/json"})

    assert response.status_code == 200
    assert response.request.headers["Accept"] == "application/json"
    assert fake.calls == [
        ("POST", "/api/v3/auth/login", None),
        ("GET", "/api/v3/Datasets/20.500.11935%2Fabc", "Bearer token-1"),
        ("GET", "/api/v3/Datasets/20.500.11935%2Fabc", "Bearer token-1"),
        ("GET", "/api/v3/Datasets/20.500.11935%2Fabc", "Bearer token-1"),
    ]


async def test_the_token_is_renewed_before_it_expires() -> None:
    """A 600 s token is reused up to 540 s (a tenth early), then a fresh login comes first."""
    fake = FakeScicat(expires_in=600)
    clock = Clock()
    session = session_for(fake, clock)

    await session.request("GET", PATH)
    clock.now += 539
    await session.request("GET", PATH)
    clock.now += 1
    await session.request("GET", PATH)

    assert fake.logins == 2
    assert authorizations(fake) == ["Bearer token-1", "Bearer token-1", "Bearer token-2"]


async def test_a_403_gets_one_fresh_login_and_one_repeat() -> None:
    """SciCat answers 403 for an expired token: log in again, once, and repeat the read."""
    fake = FakeScicat(answers=[httpx.Response(403, json={"message": "Forbidden resource"})])
    session = session_for(fake)

    response = await session.request("GET", PATH, params={"a": "1"})

    assert response.status_code == 200
    assert [(method, auth) for method, _, auth in fake.calls] == [
        ("POST", None),
        ("GET", "Bearer token-1"),
        ("POST", None),
        ("GET", "Bearer token-2"),
    ]
    assert response.request.url.params["a"] == "1"


@pytest.mark.parametrize("method", ["POST", "PATCH"])
@pytest.mark.parametrize("status", [401, 403])
async def test_a_refused_post_or_patch_renews_the_token_but_is_not_repeated(
    method: str, status: int
) -> None:
    """A 401/403 to a POST may be a job's url action answering after SciCat saved the job
    (backend src/jobs/jobs.controller.utils.ts createJob: save, then performActions; the
    same in updateJob): the token is renewed for the next request, the request not repeated."""
    fake = FakeScicat(answers=[httpx.Response(status, json={"message": "Unauthorized"})])
    session = session_for(fake)

    refused = await session.request(method, "v4/jobs", json={"type": "archive"})
    after = await session.request("GET", PATH)

    assert refused.status_code == status
    assert after.status_code == 200
    assert [(m, auth) for m, _, auth in fake.calls] == [
        ("POST", None),
        (method, "Bearer token-1"),
        ("POST", None),
        ("GET", "Bearer token-2"),
    ]


async def test_a_second_refusal_is_returned_for_the_caller_to_judge() -> None:
    """403 with a fresh token too: no third login, the 403 answer is returned as it is."""
    refused = httpx.Response(403, json={"message": "Forbidden resource"})
    fake = FakeScicat(answers=[refused, refused])
    session = session_for(fake)

    response = await session.request("GET", PATH)

    assert response.status_code == 403
    assert fake.logins == 2
    assert len(fake.calls) == 4


async def test_concurrent_requests_share_one_login() -> None:
    """Five requests started together before any token exists log in once."""
    fake = FakeScicat()
    session = session_for(fake)

    await asyncio.gather(*(session.request("GET", PATH) for _ in range(5)))

    assert fake.logins == 1
    assert authorizations(fake) == ["Bearer token-1"] * 5


@pytest.mark.parametrize(
    ("answer", "problem", "transient"),
    [
        (httpx.Response(401, json={"message": "Unauthorized"}), "refused", False),
        (httpx.Response(503, text="Service Unavailable"), "refused", True),
        (httpx.Response(429, text="Too Many Requests"), "refused", True),
        (httpx.Response(201, text="<html>proxy</html>"), "unreadable", False),
        (httpx.Response(201, json={"expires_in": 3600}), "no_token", False),
    ],
)
async def test_a_login_without_a_token_raises_with_the_reason(
    answer: httpx.Response, problem: str, transient: bool
) -> None:
    """The session maps no error itself: it says why the login failed and whether it may pass."""
    fake = FakeScicat(login_answers=[answer])
    session = session_for(fake)

    with pytest.raises(ScicatLoginFailed) as caught:
        await session.request("GET", PATH)

    assert (caught.value.problem, caught.value.status_code) == (problem, answer.status_code)
    assert caught.value.transient is transient
    assert authorizations(fake) == []
