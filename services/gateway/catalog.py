"""What the gateway reads from SciCat: a user's access groups and a dataset's owner.

Reads only (the gateway never writes SciCat). A user's identity is read with the
user's own SciCat token; datasets with the gateway's service account through a
`runtime.scicat_session.ScicatSession` (token cached, renewed before expiry and
once on 401/403). Both answers are cached briefly, so an upload's many calls
cost SciCat one read each.
"""

import hashlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar
from urllib.parse import quote

import httpx
from pydantic import SecretStr

from contracts.events import JobDataset
from runtime.scicat_session import ScicatLoginFailed, ScicatSession
from services.gateway.errors import DependencyDown, InvalidRequest, NotAuthenticated, NotFound

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


class Catalog:
    """SciCat reads over one shared client whose base URL is SciCat's `.../api/`."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        username: str,
        password: str,
        identity_cache: TtlCache[Identity],
        dataset_cache: TtlCache[DatasetOwner],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._http = http
        self._session = ScicatSession(
            http, username=username, password=SecretStr(password), clock=clock
        )
        self._identities = identity_cache
        self._datasets = dataset_cache

    async def identity(self, user_token: str) -> Identity:
        """The user behind a SciCat token; NotAuthenticated if SciCat refuses it."""
        key = hashlib.sha256(user_token.encode()).hexdigest()
        cached = self._identities.get(key)
        if cached is not None:
            return cached
        response = await self._guarded(
            self._http.get(
                "v3/users/my/identity", headers={"Authorization": f"Bearer {user_token}"}
            )
        )
        if response.status_code in (401, 403):
            msg = "SciCat did not accept your token; log in to SciCat again and retry"
            raise NotAuthenticated(msg)
        body = _json_object(response, "identity")
        profile = body.get("profile") if isinstance(body.get("profile"), dict) else {}
        groups = profile.get("accessGroups") or []
        username = profile.get("username") or body.get("externalId") or body.get("userId") or "?"
        identity = Identity(str(username), tuple(str(g) for g in groups if isinstance(g, str)))
        self._identities.put(key, identity)
        return identity

    async def dataset_owner(self, pid: str) -> DatasetOwner:
        """The dataset's ownerGroup and contact, read with the service account."""
        cached = self._datasets.get(pid)
        if cached is not None:
            return cached
        path = f"v3/Datasets/{quote(pid, safe='')}"
        response = await self._read(path)
        missing = response.status_code in (400, 404) or (
            response.status_code == 200 and response.content.strip() in (b"", b"null", b"{}")
        )
        if missing:
            msg = f"Dataset {pid} does not exist in SciCat; register it before uploading"
            raise NotFound(msg)
        if response.status_code in (401, 403):
            msg = "The archiver's SciCat account may not read datasets; tell the operators"
            raise DependencyDown(msg)
        body = _json_object(response, "dataset")
        owner_group = body.get("ownerGroup")
        if not isinstance(owner_group, str) or not owner_group:
            msg = f"Dataset {pid} does not exist in SciCat; register it before uploading"
            raise NotFound(msg)
        owner = DatasetOwner(
            pid=pid,
            owner_group=owner_group,
            owner_user=_optional_str(body.get("owner")),
            contact_email=_optional_str(body.get("contactEmail")),
        )
        self._datasets.put(pid, owner)
        return owner

    async def datasets_of_job(self, job_id: str) -> tuple[JobDataset, ...]:
        """The datasets of a SciCat job that was POSTed to us as just `{"id","type"}`."""
        path = f"v4/jobs/{quote(job_id, safe='')}"
        response = await self._read(path)
        if response.status_code in (400, 404):
            msg = f"SciCat knows no job {job_id}; send the whole job or create it in SciCat first"
            raise InvalidRequest(msg)
        body = _json_object(response, "job")
        params = body.get("jobParams") if isinstance(body.get("jobParams"), dict) else {}
        entries = params.get("datasetList") or body.get("datasetList") or []
        pids = [e.get("pid") if isinstance(e, dict) else e for e in entries]
        if not pids or not all(isinstance(pid, str) and pid for pid in pids):
            msg = f"SciCat's job {job_id} lists no datasets the archiver can read"
            raise InvalidRequest(msg)
        return tuple(JobDataset(pid=pid) for pid in pids)

    async def _read(self, path: str) -> httpx.Response:
        """GET with the service account; a login SciCat refuses is the operators' problem."""
        try:
            return await self._guarded(self._session.request("GET", path))
        except ScicatLoginFailed as exc:
            if exc.problem == "unreadable":
                msg = f"SciCat gave an unexpected login answer ({exc.status_code}); try again later"
            elif exc.problem == "no_token":
                msg = "SciCat's login answer held no token; tell the operators"
            else:
                msg = "The archiver cannot log in to SciCat; tell the operators"
            raise DependencyDown(msg) from exc

    async def _guarded(self, sending: Awaitable[httpx.Response]) -> httpx.Response:
        try:
            response = await sending
        except httpx.HTTPError as exc:
            msg = "SciCat is unreachable; try again later"
            raise DependencyDown(msg) from exc
        if response.status_code >= 500:
            msg = f"SciCat answered {response.status_code}; try again later"
            raise DependencyDown(msg)
        return response


def _json_object(response: httpx.Response, what: str) -> dict:
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code >= 400 or not isinstance(body, dict):
        msg = f"SciCat gave an unexpected {what} answer ({response.status_code}); try again later"
        raise DependencyDown(msg)
    return body


def _optional_str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None
