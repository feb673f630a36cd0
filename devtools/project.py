"""What the launcher knows of the repository: the services, where things live, its log line.

Standard library only, as the whole of ``devtools``: ``python3 manage_all.py`` runs this code
with the interpreter that creates the virtualenv (devtools/venv.py), before any package exists.
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = Path(os.environ.get("VENV_DIR", ROOT / ".venv"))
STATE = Path(os.environ.get("STATE_DIR", ROOT / ".state"))
REQUIREMENTS = ROOT / "requirements" / "dev.txt"
ENV_FILE = ROOT / "infra" / ".env"

SERVICES = {
    # name: (project folder, default port)
    "gateway": ("gateway_project", 4000),
    "analysis": ("analysis_project", 3001),
    "auth": ("auth_project", 3002),
    "playlist": ("playlist_project", 3003),
}
ORM_SERVICES = ("auth", "analysis")
FLOWER_PORT = 5555

UP_PID = STATE / "up.pid"


def log(message: str) -> None:
    print(f"manage_all | {message}", flush=True)


def venv_bin(name: str) -> str:
    return str(VENV / "bin" / name)


def venv_python() -> str:
    return venv_bin("python")


def running_up() -> int | None:
    """The pid of a `manage_all.py up` running on this state folder, if any."""
    try:
        pid = int(UP_PID.read_text().strip())
    except (OSError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return pid
