"""Run the stand-in: `python -m devstack.scicat --port P --state-dir D [...]`.

Configure it as SciCat: ADMIN_GROUPS, DELETE_GROUPS, CREATE_DATASET_GROUPS,
CREATE_DATASET_WITH_PID_GROUPS, CREATE_DATASET_PRIVILEGED_GROUPS,
UPDATE_DATASET_LIFECYCLE_GROUPS, CREATE_JOB_PRIVILEGED_GROUPS,
UPDATE_JOB_PRIVILEGED_GROUPS, DELETE_JOB_GROUPS and JOB_CONFIGURATION_FILE in
the environment (`--job-config` wins over the last); STANDIN_WRITE_WINDOW_MS
sets the read-merge-write pause (default 50).
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

import uvicorn

from devstack.scicat.app import create_app
from devstack.scicat.config import config_from_env, load_accounts


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m devstack.scicat", description=__doc__)
    parser.add_argument("--port", type=int, default=3000)
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--job-config", type=Path, help="SciCat jobConfig YAML")
    parser.add_argument("--accounts-file", type=Path, help="JSON: {user: {password,email,groups}}")
    return parser.parse_args()


def main() -> None:
    args = _arguments()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    fields: dict[str, object] = {"port": args.port, "state_dir": args.state_dir}
    if args.job_config:
        fields["job_config_path"] = args.job_config
    if args.accounts_file:
        fields["accounts"] = load_accounts(args.accounts_file)
    config = config_from_env(os.environ, **fields)
    uvicorn.run(create_app(config), host="127.0.0.1", port=config.port, log_level="warning")


if __name__ == "__main__":
    main()
