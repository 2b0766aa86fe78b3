"""`make demo`: bring the embedded stack up on free ports, report every component, stop."""

import sys
from pathlib import Path

from devstack.stack import run_dev_stack

if __name__ == "__main__":
    sys.exit(run_dev_stack(Path("var/demo").resolve(), ports="auto", check_only=True))
