"""The dev stack's `stack.json`, as every command that can use it reads it.

`--stack` takes the stack's state directory (`var/dev`) or its `stack.json`
itself; the operator tools fall back to `var/dev/stack.json` when it exists.
This module is the one reader of that file: its URLs, the `ingestor` SciCat
account and the operator's NATS login.
"""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_STACK_FILE = Path("var/dev/stack.json")


class StackFileError(Exception):
    """`--stack` names no readable dev stack; `str()` says how to get one."""


@dataclass(frozen=True)
class DevStackFile:
    path: Path
    scicat_url: str
    gateway_url: str
    ingestor: tuple[str, str]
    """The `ingestor` SciCat account: username, password."""
    nats: dict[str, str]
    """The operator's NATS login: `url`, `user`, `password` (those present)."""


def stack_json_path(given: Path) -> Path:
    """A state directory means its `stack.json`; a file is taken as it is."""
    return given / "stack.json" if given.is_dir() else given


def read_stack_file(given: Path) -> DevStackFile:
    """The dev stack described by `given` (a state dir or a stack.json); StackFileError if not."""
    path = stack_json_path(given)
    try:
        described: Any = json.loads(path.read_text())
        user = described["scicat"]["users"]["ingestor"]
        gateway = described["gateway"]
        nats = described.get("nats") or {}
        return DevStackFile(
            path=path,
            scicat_url=str(described["scicat"]["url"]),
            gateway_url=str(gateway["url"]),
            ingestor=(str(user["username"]), str(user["password"])),
            nats={k: v for k, v in nats.items() if isinstance(v, str) and v}
            if isinstance(nats, dict)
            else {},
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        msg = f"{path} is not a dev stack's stack.json (start one with `archiver dev`)"
        raise StackFileError(msg) from exc
