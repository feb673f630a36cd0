"""WSGI entry point of the playlist service (gunicorn playlist_project.wsgi)."""

import os
import sys
from pathlib import Path

_here = Path(__file__).resolve().parent.parent
for _path in (str(_here.parent), str(_here)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "playlist_project.settings")

from django.core.wsgi import get_wsgi_application  # noqa: E402

application = get_wsgi_application()
