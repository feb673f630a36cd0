#!/usr/bin/env python3
"""One entry point for the whole platform: set up, run, migrate, check and test every service.

    python manage_all.py up                  # set up (first time) and run everything
    python manage_all.py test [SUITE...]     # every test suite; ends with "N passed, N failed"
    python manage_all.py migrate | check
    python manage_all.py manage SERVICE ARGS...
    python manage_all.py reset [--yes]       # delete .state/ (all local data), after asking

Runs with a bare ``python3``: this file, and the ``devtools`` package it hands over to, import
only the standard library, since they create the virtual environment (devtools/venv.py) that
everything else runs in. One module per job, in ``devtools/``:

    cli.py           the commands above
    venv.py          the virtualenv, synced to requirements/*.txt
    env.py           infra/.env, generated secrets, each service's environment
    project.py       the services, their ports, where the virtualenv and the state live
    platform.py      the process table (what `up` runs) and the steps before it
    supervisor.py    runs the table: output, health, restarts, a watchdog (why not honcho)
    localservers.py  which local servers a command needs; servers.py runs them from wheels
    testing.py       test runs: servers sliced per run, one pytest per suite, the summary
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from devtools.cli import main

# Still imported from here by the gateway's live tests and infra's env-sample test; new code
# imports them from devtools.
from devtools.env import read_env_file, service_env  # noqa: F401
from devtools.platform import gunicorn_argv, manage  # noqa: F401
from devtools.project import ROOT, SERVICES  # noqa: F401

if __name__ == "__main__":
    sys.exit(main())
