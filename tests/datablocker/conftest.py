"""The SciCat stand-in for the datablocker's tests: the session's `scicat_standin`.

The datablocker reads each dataset's origdatablocks; tests register their
datasets (with or without files) through the stand-in's own API.
"""

import pytest

from tests.conftest import ScicatStandin as SessionStandin
from tests.datablocker.scicat_standin import ScicatStandin


@pytest.fixture(scope="session")
def scicat_standin(scicat_standin: SessionStandin) -> ScicatStandin:
    """The session's stand-in, with the datablocker's registration helpers."""
    return ScicatStandin(scicat_standin.url)
