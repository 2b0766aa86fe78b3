"""What the gateway reads from SciCat: a user's access groups, a dataset's owner, a saved job.

Reads only (the gateway never writes SciCat), through the process's
`runtime.scicat.ScicatClient`: a user's identity with the user's own SciCat
token, datasets and jobs with the service account (token cached, renewed before
expiry and once on 401/403). Here SciCat's errors become the gateway's HTTP
answers. Identities and owners are cached briefly, so an upload's many calls
cost SciCat one read each.
"""

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

from pydantic import SecretStr

from runtime.scicat import (
    ScicatClient,
    ScicatLoginFailed,
    ScicatNotFound,
    ScicatRefused,
    ScicatUnavailable,
    pid_path,
    with_filter,
)
from services.gateway.errors import DependencyDown, NotAuthenticated, NotFound

ValueT = TypeVar("ValueT")


class TtlCache(Generic[ValueT]):
    """A small dict whose entries go stale after `ttl_s` (monotonic clock)."""

    def __init__(
        self, ttl_s: float, clock: Callable[[], float] = time.monotonic, max_entries: int = 4096
    ) -> None:
        self._ttl_s = ttl_s
        self._clock = clock
        self._max_entries = max_entries
        self._entries: dict[str, tuple[float, ValueT]] = {}

    def get(self, key: str) -> ValueT | None:
        entry = self._entries.get(key)
        if entry is None or entry[0] <= self._clock():
            self._entries.pop(key, None)
            return None
        return entry[1]

    def put(self, key: str, value: ValueT) -> None:
        if len(self._entries) >= self._max_entries:
            now = self._clock()
            self._entries = {k: v for k, v in self._entries.items() if v[0] > now}
            if len(self._entries) >= self._max_entries:
                self._entries.clear()
        self._entries[key] = (self._clock() + self._ttl_s, value)


@dataclass(frozen=True)
class Identity:
    username: str
    access_groups: tuple[str, ...]


@dataclass(frozen=True)
class DatasetOwner:
    pid: str
    owner_group: str
    owner_user: str | None
    contact_email: str | None
    archive_status: str | None = None
    """`datasetlifecycle.archiveStatusMessage` (e.g. `started`, `datasetOnArchiveDisk`)."""


class ScicatLookups:
    """SciCat reads through the process's `ScicatClient` (no retries: the caller retries)."""

    def __init__(
        self,
        scicat: ScicatClient,
        *,
        identity_cache: TtlCache[Identity],
        dataset_cache: TtlCache[DatasetOwner],
    ) -> None:
        self._scicat = scicat
        self._identities = identity_cache
        self._datasets = dataset_cache

    async def identity(self, user_token: str) -> Identity:
        """The user behind a SciCat token; NotAuthenticated if SciCat refuses it."""
        key = hashlib.sha256(user_token.encode()).hexdigest()
        cached = self._identities.get(key)
        if cached is not None:
            return cached
        try:
            answer = await self._read("v3/users/my/identity", "identity", user_token=user_token)
        except ScicatRefused as exc:
            if exc.status_code in (401, 403):
                msg = "SciCat did not accept your token; log in to SciCat again and retry"
                raise NotAuthenticated(msg) from exc
            raise _unexpected("identity", exc.status_code) from exc
        body = _json_object(answer, "identity")
        profile = body.get("profile") if isinstance(body.get("profile"), dict) else {}
        groups = profile.get("accessGroups") or []
        username = profile.get("username") or body.get("externalId") or body.get("userId") or "?"
        identity = Identity(str(username), tuple(str(g) for g in groups if isinstance(g, str)))
        self._identities.put(key, identity)
        return identity

    async def log_in(self, username: str, password: SecretStr) -> str:
        """A person's SciCat token for their SciCat username and password (the status page's
        login form); NotAuthenticated if SciCat refuses them."""
        try:
            return await self._scicat.person_token(username, password)
        except ScicatLoginFailed as exc:
            if exc.problem == "refused" and 400 <= exc.status_code < 500:
                msg = "SciCat did not accept that username and password"
                raise NotAuthenticated(msg) from exc
            msg = "SciCat's login gave no token; try again later or paste a SciCat token"
            raise DependencyDown(msg) from exc
        except ScicatUnavailable as exc:
            msg = "SciCat is unreachable; try again later"
            raise DependencyDown(msg) from exc

    async def dataset_owner(self, pid: str) -> DatasetOwner:
        """The dataset's ownerGroup and contact, read with the service account."""
        cached = self._datasets.get(pid)
        if cached is not None:
            return cached
        missing = f"Dataset {pid} does not exist in SciCat; register it before uploading"
        try:
            answer = await self._read(f"v3/Datasets/{pid_path(pid)}", "dataset")
        except ScicatNotFound as exc:
            raise NotFound(missing) from exc
        except ScicatRefused as exc:
            if exc.status_code in (401, 403):
                msg = "The archiver's SciCat account may not read datasets; tell the operators"
                raise DependencyDown(msg) from exc
            raise _unexpected("dataset", exc.status_code) from exc
        if answer is None or answer == {}:
            raise NotFound(missing)
        body = _json_object(answer, "dataset")
        owner_group = body.get("ownerGroup")
        if not isinstance(owner_group, str) or not owner_group:
            raise NotFound(missing)
        lifecycle = body.get("datasetlifecycle")
        lifecycle = lifecycle if isinstance(lifecycle, dict) else {}
        owner = DatasetOwner(
            pid=pid,
            owner_group=owner_group,
            owner_user=_optional_str(body.get("owner")),
            contact_email=_optional_str(body.get("contactEmail")),
            archive_status=_optional_str(lifecycle.get("archiveStatusMessage")),
        )
        self._datasets.put(pid, owner)
        return owner

    async def saved_job(self, job_id: str, api: Literal["v3", "v4"]) -> dict[str, Any]:
        """The job as SciCat saved it, read with the service account (`GET v4/jobs/{id}`,
        or `v3/Jobs/{id}`); NotFound if SciCat knows no such job.

        Reading another group's job needs one of SciCat's ADMIN_GROUPS,
        CREATE_JOB_PRIVILEGED_GROUPS or UPDATE_JOB_PRIVILEGED_GROUPS (JobReadAny);
        the archiver's account is in the update group anyway, to write job status.
        """
        path = f"v4/jobs/{pid_path(job_id)}" if api == "v4" else f"v3/Jobs/{pid_path(job_id)}"
        missing = f"SciCat knows no job {job_id}; the archiver runs only jobs SciCat saved"
        try:
            answer = await self._read(path, "job")
        except ScicatNotFound as exc:
            raise NotFound(missing) from exc
        except ScicatRefused as exc:
            if exc.status_code in (401, 403):
                msg = (
                    f"The archiver's SciCat account may not read job {job_id}: it needs a group"
                    " in SciCat's UPDATE_JOB_PRIVILEGED_GROUPS; tell the operators"
                )
                raise DependencyDown(msg) from exc
            raise _unexpected("job", exc.status_code) from exc
        if answer is None or answer == {}:
            raise NotFound(missing)
        return _json_object(answer, "job")

    async def submitted_jobs(self) -> list[dict[str, Any]]:
        """SciCat's archive and retrieve jobs still `jobSubmitted` (`GET v4/jobs?filter=...`),
        read with the service account (JobReadAny, as `saved_job`)."""
        where = {"statusCode": "jobSubmitted", "type": {"$in": ["archive", "retrieve"]}}
        try:
            answer = await self._read(with_filter("v4/jobs", {"where": where}), "job list")
        except ScicatRefused as exc:
            raise _unexpected("job list", exc.status_code) from exc
        if not isinstance(answer, list):
            raise _unexpected("job list")
        return [job for job in answer if isinstance(job, dict)]

    async def _read(self, path: str, what: str, *, user_token: str | None = None) -> Any:
        """GET (with the service account unless `user_token`); SciCat down, garbled or
        refusing the archiver's login is DependencyDown. SciCat's refusals are the caller's."""
        try:
            return await self._scicat.send("GET", path, user_token=user_token)
        except ScicatUnavailable as exc:
            if exc.status_code is None:
                msg = "SciCat is unreachable; try again later"
                raise DependencyDown(msg) from exc
            if exc.status_code >= 500:
                msg = f"SciCat answered {exc.status_code}; try again later"
                raise DependencyDown(msg) from exc
            garbled = "login" if isinstance(exc.__cause__, ScicatLoginFailed) else what
            raise _unexpected(garbled, exc.status_code) from exc
        except ScicatLoginFailed as exc:
            if exc.problem == "no_token":
                msg = "SciCat's login answer held no token; tell the operators"
            else:
                msg = "The archiver cannot log in to SciCat; tell the operators"
            raise DependencyDown(msg) from exc


def _unexpected(what: str, status_code: int | None = None) -> DependencyDown:
    answer = f"{what} answer" if status_code is None else f"{what} answer ({status_code})"
    return DependencyDown(f"SciCat gave an unexpected {answer}; try again later")


def _json_object(answer: Any, what: str) -> dict:
    if not isinstance(answer, dict):
        raise _unexpected(what)
    return answer


def _optional_str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None
