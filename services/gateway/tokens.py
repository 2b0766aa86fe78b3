"""Upload tokens: HS256 JWTs the gateway signs on `POST /token` and checks on `/s3/*`.

An access token carries the user's SciCat access groups as they were when the
user exchanged their SciCat token; a refresh token renews it (the OAuth2
refresh grant the Ingestor's token source sends) but never past the session's
maximum age.
"""

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import jwt

from services.gateway.errors import Forbidden, NotAuthenticated
from services.gateway.scicat_lookups import Identity

ISSUER = "archiver-gateway"
_ALGORITHM = "HS256"
SCOPE = "upload"


@dataclass(frozen=True)
class Principal:
    """Who calls an `/s3/*` route, as their access token says."""

    username: str
    groups: tuple[str, ...]
    session_expires_at: int


@dataclass(frozen=True)
class TokenBundle:
    access_token: str
    expires_in: int
    refresh_token: str
    refresh_expires_in: int

    def to_response(self) -> dict[str, Any]:
        """The reference's `CreateServiceTokenResp` (OAuth2 token response)."""
        return {
            "access_token": self.access_token,
            "expires_in": self.expires_in,
            "refresh_token": self.refresh_token,
            "refresh_expires_in": self.refresh_expires_in,
            "token_type": "Bearer",
            "not-before-policy": 0,
            "scope": SCOPE,
        }


class TokenIssuer:
    def __init__(
        self,
        secret: str,
        *,
        access_ttl: timedelta,
        refresh_ttl: timedelta,
        session_max: timedelta,
    ) -> None:
        self._secret = secret
        self._access_ttl = access_ttl
        self._refresh_ttl = refresh_ttl
        self._session_max = session_max

    def issue(self, username: str, groups: tuple[str, ...], now: datetime) -> TokenBundle:
        """A new session for a user whose SciCat token was just checked."""
        session_end = int((now + self._session_max).timestamp())
        return self._bundle(Principal(username, groups, session_end), now)

    def refresh(self, refresh_token: str, now: datetime) -> TokenBundle:
        """New tokens for the session a valid refresh token belongs to."""
        return self._bundle(self._decode(refresh_token, "refresh", now), now)

    def verify_access(self, access_token: str, now: datetime) -> Principal:
        return self._decode(access_token, "access", now)

    def _bundle(self, principal: Principal, now: datetime) -> TokenBundle:
        issued = int(now.timestamp())
        access_exp = min(
            issued + int(self._access_ttl.total_seconds()), principal.session_expires_at
        )
        refresh_exp = min(
            issued + int(self._refresh_ttl.total_seconds()), principal.session_expires_at
        )
        return TokenBundle(
            access_token=self._encode(principal, "access", issued, access_exp),
            expires_in=access_exp - issued,
            refresh_token=self._encode(principal, "refresh", issued, refresh_exp),
            refresh_expires_in=refresh_exp - issued,
        )

    def _encode(
        self, principal: Principal, kind: Literal["access", "refresh"], issued: int, exp: int
    ) -> str:
        claims = {
            "iss": ISSUER,
            "sub": principal.username,
            "groups": list(principal.groups),
            "typ": kind,
            "sess_exp": principal.session_expires_at,
            "iat": issued,
            "exp": exp,
            "jti": uuid.uuid4().hex,
            "scope": SCOPE,
        }
        return jwt.encode(claims, self._secret, algorithm=_ALGORITHM)

    def _decode(self, token: str, kind: Literal["access", "refresh"], now: datetime) -> Principal:
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=[_ALGORITHM],
                issuer=ISSUER,
                options={"require": ["exp", "iat", "sub", "typ"], "verify_exp": False},
            )
        except jwt.PyJWTError as exc:
            msg = f"The {kind} token is not one this gateway issued; get a new one at POST /token"
            raise NotAuthenticated(msg) from exc
        if claims["exp"] <= int(now.timestamp()):
            msg = f"The {kind} token has expired; get a new one at POST /token"
            raise NotAuthenticated(msg)
        if claims["typ"] != kind:
            msg = f"A {claims['typ']} token was sent where a {kind} token is needed"
            raise NotAuthenticated(msg)
        groups = claims.get("groups")
        if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
            msg = f"The {kind} token carries no access groups; get a new one at POST /token"
            raise NotAuthenticated(msg)
        return Principal(str(claims["sub"]), tuple(groups), int(claims.get("sess_exp", 0)))


async def exchange_scicat_token(
    identity_of: Callable[[str], Awaitable[Identity]],
    issuer: TokenIssuer,
    scicat_token: str,
    ingestor_groups: tuple[str, ...],
    now: datetime,
) -> TokenBundle:
    """Upload tokens for a SciCat user in one of `ingestor_groups` (empty: any user)."""
    identity = await identity_of(scicat_token)
    if ingestor_groups and not set(identity.access_groups) & set(ingestor_groups):
        msg = (
            f"User {identity.username} is in none of the groups allowed to upload"
            f" ({', '.join(ingestor_groups)}); ask the facility to add you"
        )
        raise Forbidden(msg)
    return issuer.issue(identity.username, identity.access_groups, now)
