"""The virtualenv everything else runs in: created, and synced to requirements/*.txt.

Runs with the bare ``python3`` that starts ``manage_all.py`` (standard library only): a fresh
machine has nothing else. A hash of the requirement files and of the Python version, stamped in
the virtualenv, says when to install again.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys

from devtools.project import REQUIREMENTS, ROOT, VENV, log, venv_python


def requirements_digest() -> str:
    digest = hashlib.sha256()
    for path in sorted((ROOT / "requirements").glob("*.txt")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    digest.update(sys.version.encode())
    return digest.hexdigest()


def bootstrap() -> None:
    """Create .venv and install the pinned requirements, unless already done."""
    if not (VENV / "bin" / "python").exists():
        log(f"creating virtual environment in {VENV}")
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    stamp = VENV / ".requirements.sha256"
    digest = requirements_digest()
    if stamp.exists() and stamp.read_text() == digest:
        return
    log("installing requirements (first run or requirements changed)")
    pip = [venv_python(), "-m", "pip", "--disable-pip-version-check"]
    subprocess.run([*pip, "install", "--quiet", "--upgrade", "pip"], check=True)
    subprocess.run([*pip, "install", "--quiet", "-r", str(REQUIREMENTS)], check=True)
    stamp.write_text(digest)
