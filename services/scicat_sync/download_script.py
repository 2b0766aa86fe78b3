"""The bash script in a retrieve job's result: download with resume, unpack, check every file.

Every URL, name and path is quoted with `shlex.quote`; the script checks each
tar's SHA-256 before unpacking it and each unpacked file's SHA-256 after, and
exits non-zero if anything is missing or differs.
"""

import base64
import shlex
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Download:
    """One datablock to fetch: its URL, tar name and the checksums to expect."""

    dataset_dir: str
    """Where its files go, relative to the target dir (`.` for a single dataset)."""
    url: str
    tar_name: str
    tar_sha256: str
    files: tuple[tuple[str, str], ...]
    """(sha256, path inside the tar) of every member."""


_PRELUDE = r"""#!/usr/bin/env bash
# Retrieved datasets of SciCat job {job}.
# Downloads each datablock (resuming a partial download), checks its SHA-256,
# unpacks it and checks the SHA-256 of every unpacked file.
# Usage: bash {script_name} [TARGET_DIR]    (default: the current directory)
# Exit status 0: every file is present and intact; 1: something is missing or differs.
set -euo pipefail

target="${{1:-.}}"
mkdir -p -- "$target"
cd -- "$target"
downloads=.archiver-downloads
mkdir -p -- "$downloads"
failed=0

sha256_of() {{
  local line
  if command -v openssl >/dev/null 2>&1; then
    line=$(openssl dgst -sha256 -r "$1")
  elif command -v sha256sum >/dev/null 2>&1; then
    line=$(sha256sum -- "$1")
  else
    line=$(shasum -a 256 -- "$1")
  fi
  line=${{line#\\}}
  printf '%s\n' "${{line%% *}}"
}}

fetch() {{  # URL TAR_NAME SHA256: download (resuming) and check the tar
  local file="$downloads/$2" got
  if [ -f "$file" ] && [ "$(sha256_of "$file")" = "$3" ]; then
    echo "already downloaded: $2"
    return 0
  fi
  echo "downloading $2"
  if ! curl -fL --retry 5 --retry-delay 2 -C - -o "$file" "$1"; then
    echo "FAILED: could not download $2 (run again to resume)" >&2
    return 1
  fi
  got=$(sha256_of "$file")
  if [ "$got" != "$3" ]; then
    echo "FAILED: $2 has SHA-256 $got, expected $3; removed, run again to fetch it anew" >&2
    rm -f -- "$file"
    return 1
  fi
}}

unpack() {{  # TAR_NAME DIR
  mkdir -p -- "$2"
  tar -xf "$downloads/$1" -C "$2"
}}

check() {{  # SHA256 PATH: an unpacked file's checksum
  local got
  if [ ! -f "$2" ]; then
    echo "FAILED: $2 is missing" >&2
    failed=$((failed + 1))
    return 0
  fi
  got=$(sha256_of "./$2")
  if [ "$got" != "$1" ]; then
    echo "FAILED: $2 has SHA-256 $got, expected $1" >&2
    failed=$((failed + 1))
  fi
}}

"""

_EPILOGUE = """
if [ "$failed" -ne 0 ]; then
  echo "$failed problem(s), see the FAILED lines above" >&2
  exit 1
fi
rm -rf -- "$downloads"
echo "all {count} file(s) verified in $(pwd)"
"""


def _joined(directory: str, path: str) -> str:
    return path if directory in ("", ".") else f"{directory}/{path}"


def render_download_script(
    job_id: str, downloads: Sequence[Download], *, script_name: str = "retrieve.sh"
) -> str:
    """The script's text for these downloads."""
    q = shlex.quote
    header = _PRELUDE.format(job=job_id.replace("\n", " "), script_name=script_name)
    lines = [header]
    count = 0
    for item in downloads:
        lines.append(
            f"if fetch {q(item.url)} {q(item.tar_name)} {q(item.tar_sha256)}; then\n"
            f"  unpack {q(item.tar_name)} {q(item.dataset_dir)}\n"
            "else\n"
            "  failed=$((failed + 1))\n"
            "fi\n"
        )
    lines.append("\n")
    for item in downloads:
        for digest, path in item.files:
            lines.append(f"check {q(digest)} {q(_joined(item.dataset_dir, path))}\n")
            count += 1
    lines.append(_EPILOGUE.format(count=count))
    return "".join(lines)


def encode_script(script: str) -> str:
    """Base64, as SciCat's jobResultObject carries the script."""
    return base64.b64encode(script.encode()).decode()
