"""The gateway's job API, called with the person's SciCat token (no NATS, no job credentials).

`base_url` includes the gateway's root path (e.g. `.../archiver/api/v1`); the
routes are `GET /archiver/jobs`, `GET /archiver/jobs/{id}`,
`POST /archiver/jobs/{id}/cancel` and `POST /archiver/jobs/{id}/retry`, answered
with `contracts.job_views`'s models. A refusal is `ServiceRefused` whose `detail`
is the gateway's sentence ("Job 42 has already finished", ...).
"""

import time
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
import stamina
from pydantic import BaseModel, ValidationError

from archiver.ingest_errors import IngestError
from archiver.responses import TRANSIENT, checked
from contracts.job_views import CancelAnswer, JobDetail, JobList, RetryAnswer

SERVICE = "the archiver gateway"
ModelT = TypeVar("ModelT", bound=BaseModel)


class RetryPending(IngestError):
    """The retry was accepted, but its new SciCat job did not appear in time."""


class JobApi:
    def __init__(self, http: httpx.Client, base_url: str, scicat_token: str) -> None:
        self._http = http
        self._jobs = f"{base_url.rstrip('/')}/archiver/jobs"
        self._headers = {"Authorization": f"Bearer {scicat_token}"}

    def jobs(
        self,
        *,
        state: str | None = None,
        job_type: str | None = None,
        owner_group: str | None = None,
    ) -> JobList:
        """The jobs the person may see (all, for an operator), newest first."""
        params = {
            k: v
            for k, v in (("state", state), ("type", job_type), ("owner_group", owner_group))
            if v
        }
        return _parsed(JobList, self._read(self._jobs, params))

    def job(self, job_id: str) -> JobDetail:
        """One job with each dataset's phase, percent and datablocks (404: unknown or not yours)."""
        return _parsed(JobDetail, self._read(self._url(job_id), {}))

    def cancel(self, job_id: str) -> CancelAnswer:
        return _parsed(CancelAnswer, self._post(self._url(job_id) + "/cancel"))

    def retry(self, job_id: str) -> RetryAnswer:
        return _parsed(RetryAnswer, self._post(self._url(job_id) + "/retry"))

    def retried_as(
        self,
        job_id: str,
        *,
        timeout_s: float,
        poll_s: float = 1.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> str:
        """The newest retry of `job_id`, waiting up to `timeout_s` for it to be created."""
        deadline = clock() + timeout_s
        while True:
            retries = self.job(job_id).retried_as
            if retries:
                return retries[-1]
            if clock() + poll_s > deadline:
                msg = (
                    f"the retry of job {job_id} was accepted, but its new SciCat job did not"
                    f" appear within {timeout_s:g} s; see `archiver job {job_id}` later"
                )
                raise RetryPending(msg)
            sleep(poll_s)

    def _url(self, job_id: str) -> str:
        return f"{self._jobs}/{quote(job_id, safe='')}"

    @stamina.retry(on=TRANSIENT, attempts=4, wait_max=5.0)
    def _read(self, url: str, params: dict[str, str]) -> Any:
        response = self._http.get(url, params=params, headers=self._headers)
        return checked(SERVICE, response).json()

    def _post(self, url: str) -> Any:
        # Sent once: a cancel or retry repeated after a lost answer is the gateway's to judge.
        return checked(SERVICE, self._http.post(url, headers=self._headers)).json()


def _parsed(model: type[ModelT], body: Any) -> ModelT:
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        msg = f"{SERVICE} answered with something other than a {model.__name__}"
        raise IngestError(msg) from exc
