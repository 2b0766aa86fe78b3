"""The stand-in's state: JSON files in `state_dir`, one per collection.

Every change is written at once with a temp file + `os.replace`, so a crash
never leaves a half-written file and a restart on the same directory sees
every dataset, datablock, job and history entry that was acknowledged. The
write history only grows, so it is an append-only JSON-lines file: rewriting
it whole on every write made each SciCat call slower than the last.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

_DOCUMENT_COLLECTIONS = ("datasets", "origdatablocks", "datablocks", "jobs")


class StateStore:
    """Collections of documents keyed by id, plus the ordered write history."""

    def __init__(self, state_dir: Path) -> None:
        self._dir = state_dir
        self._dir.mkdir(parents=True, exist_ok=True)
        self.datasets: dict[str, dict[str, Any]] = self._load("datasets", {})
        self.origdatablocks: dict[str, dict[str, Any]] = self._load("origdatablocks", {})
        self.datablocks: dict[str, dict[str, Any]] = self._load("datablocks", {})
        self.jobs: dict[str, dict[str, Any]] = self._load("jobs", {})
        self.history: list[dict[str, Any]] = self._load_history()

    def _path(self, name: str) -> Path:
        return self._dir / f"{name}.json"

    def _load(self, name: str, empty: Any) -> Any:
        path = self._path(name)
        if not path.exists():
            return empty
        return json.loads(path.read_text(encoding="utf-8"))

    def _load_history(self) -> list[dict[str, Any]]:
        path = self._dir / "history.jsonl"
        if not path.exists():
            return []
        entries = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                entries.append(json.loads(line))
            except json.JSONDecodeError:
                # A crash mid-append leaves at most one torn last line: that write
                # was never acknowledged, so it is not part of the history.
                break
        return entries

    def save(self, *names: str) -> None:
        """Persist the named collections atomically (all when none are named)."""
        for name in names or _DOCUMENT_COLLECTIONS:
            data = getattr(self, name)
            fd, tmp = tempfile.mkstemp(dir=self._dir, prefix=f".{name}.", suffix=".tmp")
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as handle:
                    json.dump(data, handle)
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(tmp, self._path(name))
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise

    def append_history(self, entry: dict[str, Any]) -> int:
        """Append one write record and persist it; returns its index."""
        entry = {"index": len(self.history), **entry}
        # Mode 600 like the collections (mkstemp): job results hold presigned URLs.
        fd = os.open(self._dir / "history.jsonl", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(entry) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        self.history.append(entry)
        return entry["index"]
