"""People on the job API and the status page: who they are, and what they may see and steer.

A person authenticates with their SciCat token (`Authorization: Bearer <token>`,
as SciCat's web UI hands it out); the gateway asks SciCat who that is. Members
of `GATEWAY_OPERATOR_GROUPS` are operators: they see and steer every job. Anyone
else sees and steers the jobs whose owner group is one of their access groups.
"""

from dataclasses import dataclass

from services.gateway.bootstrap import Gateway
from services.gateway.errors import NotAuthenticated


@dataclass(frozen=True)
class Person:
    username: str
    groups: tuple[str, ...]
    operator: bool

    def may_see(self, owner_group: str | None) -> bool:
        """Operators see every job; others the jobs of their groups (a v3 job has no group)."""
        return self.operator or (owner_group is not None and owner_group in self.groups)


def scicat_token(authorization: str | None) -> str:
    """The SciCat token of an `Authorization: Bearer` header; NotAuthenticated if none."""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        msg = "Send your SciCat token as 'Authorization: Bearer <token>'"
        raise NotAuthenticated(msg)
    return token.strip()


async def person_of(token: str, gateway: Gateway) -> Person:
    """Who holds the SciCat `token` (NotAuthenticated if SciCat refuses it)."""
    identity = await gateway.catalog.identity(token)
    operator_groups = set(gateway.operator_groups)
    return Person(
        username=identity.username,
        groups=identity.access_groups,
        operator=bool(operator_groups.intersection(identity.access_groups)),
    )
