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
from playlists.runtime import start_web  # noqa: E402

_django = get_wsgi_application()


def application(environ, start_response):  # type: ignore[no-untyped-def]
    """Django, plus the background threads of a web process, started on its first request.

    Started here (not in AppConfig.ready) so tests and management commands never run them,
    and lazily (not at import) so they live in each gunicorn worker even with --preload.
    """
    start_web()
    return _django(environ, start_response)
