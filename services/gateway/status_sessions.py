"""Status page logins: a cookie holding an HS256 JWT the gateway signs, scope "status".

Only operators get one. It names the operator and their SciCat groups as they
were at login and lives `status_session_ttl_s` (short: an operator removed from
the operator groups loses the page when it expires). The cookie is HttpOnly,
SameSite=Strict and Path=/; the page's forms also check the Origin header.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

import jwt

from services.gateway.tokens import ISSUER

COOKIE = "archiver_status"
SCOPE = "status"
_ALGORITHM = "HS256"


@dataclass(frozen=True)
class StatusLogin:
    """The operator a session names, with their SciCat groups at login."""

    username: str
    groups: tuple[str, ...]


class StatusSessions:
    def __init__(self, secret: str, ttl: timedelta) -> None:
        self._secret = secret
        self.ttl = ttl

    def issue(self, operator: StatusLogin, now: datetime) -> str:
        """A session for `operator` (the caller checked that they are one)."""
        issued = int(now.timestamp())
        claims = {
            "iss": ISSUER,
            "sub": operator.username,
            "groups": list(operator.groups),
            "scope": SCOPE,
            "iat": issued,
            "exp": issued + int(self.ttl.total_seconds()),
        }
        return jwt.encode(claims, self._secret, algorithm=_ALGORITHM)

    def operator(self, cookie: str | None, now: datetime) -> StatusLogin | None:
        """The operator a session cookie names; None if it is missing, forged, expired or
        not a status page session (an upload token, say)."""
        if not cookie:
            return None
        try:
            claims = jwt.decode(
                cookie,
                self._secret,
                algorithms=[_ALGORITHM],
                issuer=ISSUER,
                options={"require": ["exp", "iat", "sub", "scope"], "verify_exp": False},
            )
        except jwt.PyJWTError:
            return None
        groups = claims.get("groups")
        if (
            claims["scope"] != SCOPE
            or claims["exp"] <= int(now.timestamp())
            or not isinstance(groups, list)
            or not all(isinstance(g, str) for g in groups)
        ):
            return None
        return StatusLogin(username=str(claims["sub"]), groups=tuple(groups))
