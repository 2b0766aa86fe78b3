"""The SciCat client's one error mapping and one retry policy, against a scripted fake SciCat."""

from dataclasses import dataclass, field

import httpx
import pytest
import stamina
from pydantic import SecretStr

from runtime.metrics import REGISTRY
from runtime.scicat import (
    RetryPolicy,
    ScicatClient,
    ScicatError,
    ScicatLoginFailed,
    ScicatNotFound,
    ScicatNotResent,
    ScicatRefused,
    ScicatUnavailable,
    ScicatUnreachable,
    is_transient,
    open_scicat_client,
)
from runtime.settings import ScicatSettings
from runtime.settling import PermanentError

PATH = "v3/Datasets/20.500.11935%2Fabc"
JOB_PATH = "v4/jobs/job-7"
INVALID_JOB_ID = '{"message":"Invalid job id.","statusCode":400}'

Answer = httpx.Response | Exception


@dataclass
class FakeScicat:
    """Logs in `archiveManager`; answers the scripted responses (or raises), then 200 `{}`."""

    answers: list[Answer] = field(default_factory=list)
    login_answers: list[Answer] = field(default_factory=list)
    calls: list[tuple[str, str, str | None]] = field(default_factory=list)
    logins: int = 0

    def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.raw_path.decode()
        self.calls.append((request.method, path, request.headers.get("Authorization")))
        if path == "/api/v3/auth/login":
            scripted = self.login_answers
            self.logins += 1
            if not scripted:
                return httpx.Response(201, json={"access_token": f"token-{self.logins}"})
        else:
            scripted = self.answers
            if not scripted:
                return httpx.Response(200, json={})
        answer = scripted.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    def requests(self) -> int:
        return sum(1 for _, path, _ in self.calls if not path.endswith("/auth/login"))


def client_for(fake: FakeScicat, retry: RetryPolicy | None = None) -> ScicatClient:
    http = httpx.AsyncClient(
        transport=httpx.MockTransport(fake.handle), base_url="http://scicat.test/api/"
    )
    return ScicatClient(
        http,
        username="archiveManager",
        password=SecretStr("pw"),
        retry=retry or RetryPolicy(timeout_s=5.0, attempts=3),
    )


async def test_an_answer_is_decoded_and_an_empty_one_is_none() -> None:
    """JSON comes back decoded; an empty body (SciCat's answer to some PATCHes) is None."""
    fake = FakeScicat(answers=[httpx.Response(200, json=[{"a": 1}]), httpx.Response(200)])
    scicat = client_for(fake)

    assert await scicat.send("GET", PATH) == [{"a": 1}]
    assert await scicat.send("PATCH", PATH, {"a": 2}) is None


@pytest.mark.parametrize(
    ("answer", "status_code"),
    [
        (httpx.Response(503, text="Service Unavailable"), 503),
        (httpx.Response(429, text="Too Many Requests"), 429),
        (httpx.Response(200, text="<html>maintenance</html>"), 200),
        (httpx.ReadTimeout("read timed out"), None),
    ],
)
async def test_scicat_down_overloaded_or_garbled_is_unavailable(
    answer: Answer, status_code: int | None
) -> None:
    """5xx, 429, a body that is not JSON and a lost answer are transient, with the status seen."""
    fake = FakeScicat(answers=[answer])
    scicat = client_for(fake)

    with pytest.raises(ScicatUnavailable) as caught:
        await scicat.send("GET", PATH)

    assert caught.value.status_code == status_code
    assert not isinstance(caught.value, ScicatUnreachable)
    assert is_transient(caught.value)


async def test_no_connection_is_unreachable_so_nothing_was_changed() -> None:
    """A refused connection: the request never reached SciCat (a transient ScicatUnreachable)."""
    fake = FakeScicat(answers=[httpx.ConnectError("connection refused")])
    scicat = client_for(fake)

    with pytest.raises(ScicatUnreachable) as caught:
        await scicat.send("POST", "v4/jobs", {"type": "archive"})

    assert caught.value.status_code is None
    assert str(caught.value) == "SciCat did not answer: ConnectError: connection refused"
    assert is_transient(caught.value)


async def test_a_refusal_that_a_fresh_token_does_not_change_carries_scicats_answer() -> None:
    """403 with the old and with a new token: ScicatRefused with status and body, not retried."""
    refused = httpx.Response(403, text='{"message":"Forbidden resource"}')
    fake = FakeScicat(answers=[refused, refused])
    scicat = client_for(fake)

    with pytest.raises(ScicatRefused) as caught:
        await scicat.call("GET", PATH)

    assert str(caught.value) == f"SciCat refused GET {PATH} with 403"
    assert (caught.value.status_code, caught.value.detail) == (
        403,
        '{"message":"Forbidden resource"}',
    )
    assert not isinstance(caught.value, ScicatNotFound)
    assert (fake.logins, fake.requests()) == (2, 2)


async def test_a_refused_post_is_not_resent_and_is_transient_for_the_caller_to_judge() -> None:
    """401 to a job POST: an expired token or the job's url action after the job was saved
    (backend src/jobs/jobs.controller.utils.ts createJob): ScicatNotResent, sent once."""
    fake = FakeScicat(answers=[httpx.Response(401, text='{"message":"Unauthorized"}')])
    scicat = client_for(fake)

    with pytest.raises(ScicatNotResent) as caught:
        await scicat.send("POST", "v4/jobs", {"type": "archive"})

    assert (caught.value.method, caught.value.path) == ("POST", "v4/jobs")
    assert (caught.value.status_code, caught.value.detail) == (401, '{"message":"Unauthorized"}')
    assert is_transient(caught.value)
    assert (fake.logins, fake.requests()) == (2, 1)


async def test_a_patch_refused_for_an_expired_token_goes_through_when_the_caller_retries() -> None:
    """`call` repeats a unit of work its caller declared safe: the PATCH, with the new token."""
    fake = FakeScicat(answers=[httpx.Response(403, text='{"message":"Forbidden resource"}')])
    scicat = client_for(fake)

    with stamina.set_testing(True, attempts=2):
        answer = await scicat.call("PATCH", PATH, {"a": 1})

    assert answer == {}
    assert [auth for _, path, auth in fake.calls if not path.endswith("/login")] == [
        "Bearer token-1",
        "Bearer token-2",
    ]


async def test_another_accounts_client_logs_in_as_itself_over_the_same_connection_pool() -> None:
    """`as_account`: the job creator's requests go through the same transport with its own
    token; the first account's token is untouched."""
    fake = FakeScicat()
    scicat = client_for(fake)
    creator = scicat.as_account("archiveJobs", SecretStr("pw2"))

    await scicat.send("GET", PATH)
    await creator.send("GET", JOB_PATH)
    await scicat.send("GET", PATH)

    assert fake.calls == [
        ("POST", "/api/v3/auth/login", None),
        ("GET", f"/api/{PATH}", "Bearer token-1"),
        ("POST", "/api/v3/auth/login", None),
        ("GET", f"/api/{JOB_PATH}", "Bearer token-2"),
        ("GET", f"/api/{PATH}", "Bearer token-1"),
    ]


@pytest.mark.parametrize(
    ("method", "path", "answer"),
    [
        ("GET", PATH, httpx.Response(404, json={"message": "dataset: x not found"})),
        ("GET", PATH, httpx.Response(400, json={"message": "bad id"})),
        ("GET", JOB_PATH, httpx.Response(400, text=INVALID_JOB_ID)),
        ("PATCH", JOB_PATH, httpx.Response(400, text=INVALID_JOB_ID)),
    ],
)
async def test_an_unknown_record_is_not_found(
    method: str, path: str, answer: httpx.Response
) -> None:
    """404, a 400 to a read, and SciCat's "Invalid job id." are ScicatNotFound, a refusal."""
    fake = FakeScicat(answers=[answer])
    scicat = client_for(fake)

    with pytest.raises(ScicatNotFound) as caught:
        await scicat.call(method, path)

    assert isinstance(caught.value, ScicatRefused)
    assert caught.value.status_code == answer.status_code
    assert fake.requests() == 1


@pytest.mark.parametrize("status", [400, 409, 422])
async def test_a_write_refused_for_its_body_is_refused_not_not_found(status: int) -> None:
    """A 4xx to a write about its body (validation, conflict) is a plain ScicatRefused."""
    fake = FakeScicat(answers=[httpx.Response(status, json={"message": ["size must be a number"]})])
    scicat = client_for(fake)

    with pytest.raises(ScicatRefused) as caught:
        await scicat.send("POST", "v3/Datasets/x/datablocks", {"size": "a"})

    assert type(caught.value) is ScicatRefused
    assert caught.value.status_code == status


async def test_transient_trouble_is_retried_until_scicat_answers() -> None:
    """A 502 and a dropped connection, then the answer: three tries, one result."""
    fake = FakeScicat(answers=[httpx.Response(502), httpx.ConnectError("reset")])
    scicat = client_for(fake)

    with stamina.set_testing(True, attempts=3):
        assert await scicat.call("GET", PATH) == {}

    assert fake.requests() == 3


async def test_the_last_transient_error_propagates_once_the_attempts_are_spent() -> None:
    """Three 503s with three attempts: the third ScicatUnavailable is raised."""
    fake = FakeScicat(answers=[httpx.Response(503)] * 3)
    scicat = client_for(fake)

    with stamina.set_testing(True, attempts=3), pytest.raises(ScicatUnavailable) as caught:
        await scicat.call("GET", PATH)

    assert caught.value.status_code == 503
    assert fake.requests() == 3


async def test_without_a_retry_policy_nothing_is_retried() -> None:
    """The gateway answers a caller who retries: one 503 is raised at once."""
    fake = FakeScicat(answers=[httpx.Response(503), httpx.Response(200, json={})])
    http = httpx.AsyncClient(
        transport=httpx.MockTransport(fake.handle), base_url="http://scicat.test/api/"
    )
    scicat = ScicatClient(http, username="archiveManager", password=SecretStr("pw"))

    with pytest.raises(ScicatUnavailable):
        await scicat.call("GET", PATH)

    assert fake.requests() == 1


@pytest.mark.parametrize(
    ("answer", "status_code"),
    [
        (httpx.Response(503, text="Service Unavailable"), 503),
        (httpx.Response(201, text="<html>proxy</html>"), 201),
    ],
)
async def test_an_overloaded_or_garbled_login_is_transient(
    answer: httpx.Response, status_code: int
) -> None:
    """A login answered 5xx or with something unreadable is retried like any call."""
    fake = FakeScicat(login_answers=[answer])
    scicat = client_for(fake)

    with stamina.set_testing(True, attempts=3):
        await scicat.log_in()

    assert fake.logins == 2
    with pytest.raises(ScicatUnavailable) as caught:
        await client_for(FakeScicat(login_answers=[answer])).send("GET", PATH)
    assert caught.value.status_code == status_code


@pytest.mark.parametrize(
    ("answer", "problem"),
    [
        (httpx.Response(401, json={"message": "Unauthorized"}), "refused"),
        (httpx.Response(201, json={"expires_in": 3600}), "no_token"),
    ],
)
async def test_a_login_a_person_must_fix_is_raised_at_once(
    answer: httpx.Response, problem: str
) -> None:
    """Wrong credentials or no token: ScicatLoginFailed, not retried, nothing else sent."""
    fake = FakeScicat(login_answers=[answer])
    scicat = client_for(fake)

    with pytest.raises(ScicatLoginFailed) as caught:
        await scicat.call("GET", PATH)

    assert caught.value.problem == problem
    assert not is_transient(caught.value)
    assert (fake.logins, fake.requests()) == (1, 0)


async def test_a_users_token_is_sent_as_it_is_and_never_renewed() -> None:
    """With `user_token` no login happens, and SciCat's 401 for it is the caller's refusal."""
    fake = FakeScicat(
        answers=[
            httpx.Response(200, json={"profile": {"username": "u"}}),
            httpx.Response(401, json={"message": "Unauthorized"}),
        ]
    )
    scicat = client_for(fake)

    identity = await scicat.send("GET", "v3/users/my/identity", user_token="user-token")
    with pytest.raises(ScicatRefused) as caught:
        await scicat.send("GET", "v3/users/my/identity", user_token="user-token")

    assert identity == {"profile": {"username": "u"}}
    assert caught.value.status_code == 401
    assert fake.calls == [("GET", "/api/v3/users/my/identity", "Bearer user-token")] * 2


def test_every_error_shares_one_base_and_none_decides_a_messages_fate() -> None:
    """One base, ScicatError; whether a message is dead-lettered is the service's choice."""
    errors = [
        ScicatUnavailable(503, ""),
        ScicatUnreachable("ConnectError"),
        ScicatNotResent("POST", "v4/jobs", 401, ""),
        ScicatRefused("GET", PATH, 403, ""),
        ScicatNotFound("GET", PATH, 404, ""),
        ScicatLoginFailed("refused", 401, ""),
    ]

    assert all(isinstance(e, ScicatError) for e in errors)
    assert not any(isinstance(e, PermanentError) for e in errors)
    assert [is_transient(e) for e in errors] == [True, True, True, False, False, False]
    assert not is_transient(ValueError("x"))


def scicat_requests(method: str, outcome: str) -> float:
    labels = {"method": method, "outcome": outcome}
    return REGISTRY.get_sample_value("archiver_scicat_requests_total", labels) or 0.0


async def test_every_request_to_scicat_is_counted_by_method_and_outcome(scicat_standin) -> None:
    """The process's client counts SciCat's answers by status class, and no answer as error."""
    before = {
        key: scicat_requests(*key) for key in (("GET", "2xx"), ("GET", "4xx"), ("GET", "error"))
    }
    settings = ScicatSettings(url=scicat_standin.url, username="archiveManager", password="aman")
    async with open_scicat_client(settings) as scicat:
        await scicat.check_health()
        with pytest.raises(ScicatNotFound):
            await scicat.send("GET", "v3/Datasets/20.500.11935%2Fno-such-dataset")
    unreachable = ScicatSettings(url="http://127.0.0.1:9/api", username="u", password="p")
    async with open_scicat_client(unreachable) as scicat:
        with pytest.raises(ScicatUnreachable):
            await scicat.check_health()

    assert scicat_requests("GET", "2xx") - before[("GET", "2xx")] == 1
    assert scicat_requests("GET", "4xx") - before[("GET", "4xx")] == 1
    assert scicat_requests("GET", "error") - before[("GET", "error")] == 1
