"""Logging in as sites do: a token pasted from SciCat's web UI, or a password, checked first.

Against the SciCat stand-in (a real HTTP server with SciCat's login and user routes).
"""

import threading
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from archiver.cli import app
from archiver.ingesting import Endpoints, IngestRequest, ingest, resolve_endpoints
from archiver.scicat_client import Credentials, LoginRefused, ScicatClient
from tests.conftest import ScicatStandin

UNREACHABLE_GATEWAY = "http://127.0.0.1:9/archiver/api/v1"


class HashingWatch:
    """An IngestProgress that remembers whether hashing ever started."""

    def __init__(self) -> None:
        self.hashing_started_with: int | None = None

    def hashing_started(self, total_bytes: int) -> None:
        self.hashing_started_with = total_bytes

    def hashed(self, nbytes: int) -> None: ...
    def upload_started(self, total_bytes: int) -> None: ...
    def file_started(self, name: str, size: int) -> None: ...
    def advanced(self, name: str, nbytes: int) -> None: ...
    def file_finished(self, name: str) -> None: ...
    def note(self, message: str) -> None: ...


def big_folder(root: Path) -> Path:
    root.mkdir()
    (root / "a.bin").write_bytes(b"\0" * 1024 * 1024)
    return root


def test_a_token_from_scicats_web_ui_is_checked_and_names_its_holder(
    scicat_standin: ScicatStandin,
) -> None:
    """SciCat says whose the token is: its username and email become the dataset's defaults."""
    token = scicat_standin.login("ingestor")

    with httpx.Client(timeout=10) as http:
        login = ScicatClient(http, scicat_standin.url).sign_in(Credentials(token=token))

    assert (login.username, login.email, login.token) == (
        "ingestor",
        "ingestor@standin.local",
        token,
    )


def test_a_stale_token_is_refused_with_what_to_do(scicat_standin: ScicatStandin) -> None:
    """A token SciCat does not accept says: copy a fresh one from the web UI."""
    with httpx.Client(timeout=10) as http, pytest.raises(LoginRefused) as refused:
        ScicatClient(http, scicat_standin.url).sign_in(Credentials(token="eyJ.not.a-token"))

    assert "copy a fresh one from SciCat's web UI" in str(refused.value)
    assert "eyJ.not.a-token" not in str(refused.value)


def test_a_wrong_password_fails_in_under_a_second_before_any_hashing(
    scicat_standin: ScicatStandin, tmp_path: Path
) -> None:
    """The login is checked before the folder is hashed; the sentence names the user."""
    folder = big_folder(tmp_path / "run")
    endpoints = Endpoints(scicat_standin.url, UNREACHABLE_GATEWAY, "ingestor", "wrong")
    progress = HashingWatch()
    started = time.monotonic()

    with httpx.Client(timeout=10) as http, pytest.raises(LoginRefused) as refused:
        ingest(
            IngestRequest(folder=folder, owner_group="group1"),
            endpoints,
            http=http,
            progress=progress,
            cancel=threading.Event(),
        )

    assert time.monotonic() - started < 1.0
    assert progress.hashing_started_with is None
    assert str(refused.value) == (
        "SciCat refused the login of 'ingestor': wrong username or password"
        " (or paste a token from SciCat's web UI with --token)"
    )


def test_the_cli_takes_the_token_from_scicat_token_and_refuses_a_bad_one_at_once(
    scicat_standin: ScicatStandin, tmp_path: Path
) -> None:
    """`SCICAT_TOKEN` is the login; a bad one stops `archiver ingest` with exit 1, no hashing."""
    folder = big_folder(tmp_path / "run")

    result = CliRunner().invoke(
        app,
        ["ingest", str(folder), "--owner-group", "group1"],
        env={
            "SCICAT_TOKEN": "expired-token",
            "ARCHIVER_SCICAT_URL": scicat_standin.url,
            "ARCHIVER_GATEWAY_URL": UNREACHABLE_GATEWAY,
            "COLUMNS": "300",
        },
    )

    assert result.exit_code == 1, result.output
    assert "SciCat did not accept the token" in result.output
    assert "hashing" not in result.output


def test_a_username_without_a_password_asks_for_it_without_echo() -> None:
    """The prompt is asked for the password only when none was given."""
    asked: list[str] = []

    def ask(user: str) -> str:
        asked.append(user)
        return "typed"

    endpoints = resolve_endpoints(None, "http://s/api", "http://g", "alice", None, None, ask)
    with_token = resolve_endpoints(None, "http://s/api", "http://g", "alice", None, "tok", ask)

    assert asked == ["alice"]
    assert endpoints.credentials == Credentials(username="alice", password="typed")
    assert with_token.credentials == Credentials(token="tok")
    assert "tok" not in repr(with_token)
    assert "typed" not in repr(endpoints)


def test_the_cli_prompt_hides_the_password(monkeypatch: pytest.MonkeyPatch) -> None:
    """`archiver ingest --username U` at a terminal prompts with hide_input."""
    from archiver import cli

    seen: dict[str, object] = {}

    def prompt(text: str, **options: object) -> str:
        seen.update(options, text=text)
        return "pw"

    monkeypatch.setattr(cli.typer, "prompt", prompt)
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    ask = cli._ask_password()

    assert ask is not None
    assert ask("alice") == "pw"
    assert seen == {"text": "SciCat password for alice", "hide_input": True}
