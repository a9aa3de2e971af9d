"""The programs the cluster tests run, found as manage and scripts/test.sh find them."""

import os
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# cargo test builds it; scripts/test.sh builds it before the cluster tests.
MANAGE = os.environ.get("MANAGE_BIN", str(ROOT / "target" / "debug" / "manage"))
_VENV_SERVER = ROOT / ".venv" / "bin" / "nats-server"
# NATS_CLUSTER_BIN, else the repository's .venv, else PATH (what manage itself does).
NATS_SERVER = os.environ.get("NATS_CLUSTER_BIN") or (
    str(_VENV_SERVER) if _VENV_SERVER.is_file() else shutil.which("nats-server")
)
