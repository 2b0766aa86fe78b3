"""Every error the SciCat client raises, under one base.

    ScicatError
    ├── ScicatUnavailable      5xx, 429, no connection, an unreadable answer: try again later
    │   ├── ScicatUnreachable  no connection was made, so SciCat never saw the request
    │   └── ScicatNotResent    401/403 to a POST/PATCH: token renewed, request not repeated
    ├── ScicatRefused          a 4xx that a fresh token did not change: retrying will not help
    │   └── ScicatNotFound     SciCat knows no such record
    └── ScicatLoginFailed      the service account's login gave no token

httpx's own errors and SciCat's status codes are mapped to these in one place,
`runtime.scicat.client`; only `ScicatUnavailable` is retried there. What a
refusal means for a message (dead-letter it, or nak it for later) is the
service's to decide.
"""

from typing import Literal

LoginProblem = Literal["refused", "unreadable", "no_token"]


class ScicatError(Exception):
    """Base of the SciCat client's errors."""


class ScicatUnavailable(ScicatError):
    """SciCat did not answer usefully: worth trying again later.

    `status_code` is SciCat's (or a proxy's) status, None when no answer came;
    `detail` is the start of the answer's body or the connection error.
    """

    def __init__(self, status_code: int | None, detail: str) -> None:
        answered = (
            "SciCat did not answer" if status_code is None else f"SciCat answered {status_code}"
        )
        super().__init__(f"{answered}: {detail}" if detail else answered)
        self.status_code = status_code
        self.detail = detail


class ScicatUnreachable(ScicatUnavailable):
    """No connection was made: the request never reached SciCat, so it changed nothing there."""

    def __init__(self, detail: str) -> None:
        super().__init__(None, detail)


class ScicatNotResent(ScicatUnavailable):
    """SciCat answered 401/403 to a request the session does not repeat on its own (POST, PATCH).

    The answer is ambiguous: an expired token (SciCat did nothing), or a refusal SciCat
    passed on after it acted (a job's url action answered 401 after the job was saved).
    The token is renewed. Transient, so a caller that knows its unit of work is safe to
    repeat (`ScicatClient.call`/`retrying`) repeats it; a caller of a request that must
    not happen twice (creating a job) looks in SciCat before sending it again.
    """

    def __init__(self, method: str, path: str, status_code: int, detail: str) -> None:
        super().__init__(status_code, detail)
        self.method = method
        self.path = path


class ScicatRefused(ScicatError):
    """SciCat refused the request with a 4xx, also with a fresh token: retrying cannot fix it.

    `detail` is the start of SciCat's answer (`{"message","error","statusCode"}`).
    """

    def __init__(self, method: str, path: str, status_code: int, detail: str) -> None:
        super().__init__(f"SciCat refused {method} {path} with {status_code}")
        self.method = method
        self.path = path
        self.status_code = status_code
        self.detail = detail


class ScicatNotFound(ScicatRefused):
    """SciCat knows no such record: 404, or 400 to a read (jobs: "Invalid job id.")."""


class ScicatLoginFailed(ScicatError):
    """SciCat's login answer gave no token.

    `problem` says why: "refused" (SciCat answered `status_code` >= 400),
    "unreadable" (the body is not a JSON object) or "no_token" (a JSON object
    without `access_token`/`id`). `detail` is the start of SciCat's body.
    The client raises it only when a person must act (wrong credentials, an
    account SciCat refuses); an overloaded or garbled login is `ScicatUnavailable`.
    """

    def __init__(self, problem: LoginProblem, status_code: int, detail: str) -> None:
        super().__init__(f"SciCat login answered {status_code} ({problem})")
        self.problem: LoginProblem = problem
        self.status_code = status_code
        self.detail = detail

    @property
    def transient(self) -> bool:
        """SciCat (or a proxy) was overloaded or down: trying later may succeed."""
        return self.problem == "refused" and (self.status_code >= 500 or self.status_code == 429)
