"""SciCat for the services: one client, one session, one error tree, one retry policy.

`ScicatClient` (client.py) sends requests as the service account (or with a
user's token) and maps every failure to the errors of errors.py; its session
(session.py) logs in, reuses and renews the token. Services keep only their
calls and the parsing of SciCat's answers.
"""

from runtime.scicat.client import (
    RetryPolicy,
    ScicatClient,
    is_transient,
    open_scicat_client,
    pid_path,
    with_filter,
)
from runtime.scicat.errors import (
    ScicatError,
    ScicatLoginFailed,
    ScicatNotFound,
    ScicatNotResent,
    ScicatRefused,
    ScicatUnavailable,
    ScicatUnreachable,
)
from runtime.scicat.session import ScicatSession

__all__ = [
    "RetryPolicy",
    "ScicatClient",
    "ScicatError",
    "ScicatLoginFailed",
    "ScicatNotFound",
    "ScicatNotResent",
    "ScicatRefused",
    "ScicatSession",
    "ScicatUnavailable",
    "ScicatUnreachable",
    "is_transient",
    "open_scicat_client",
    "pid_path",
    "with_filter",
]
