#!/usr/bin/env python
"""Django's command-line utility for the analysis service."""

import sys
from pathlib import Path

here = Path(__file__).resolve().parent
# The project folder (settings and apps) and the repository root (the `common` package).
sys.path[:0] = [str(here), str(here.parent)]

from common.entrypoints import manage  # noqa: E402

if __name__ == "__main__":
    manage("analysis_project.settings")
