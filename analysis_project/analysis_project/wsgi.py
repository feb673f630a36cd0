"""WSGI entry point of the analysis service (gunicorn analysis_project.wsgi)."""

import sys
from pathlib import Path

_here = Path(__file__).resolve().parent.parent
for _path in (str(_here.parent), str(_here)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from common.entrypoints import wsgi_application  # noqa: E402

application = wsgi_application("analysis_project.settings")
