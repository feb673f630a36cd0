"""WSGI entry point of the auth service (gunicorn auth_project.wsgi)."""

import sys
from pathlib import Path

_here = Path(__file__).resolve().parent.parent
for _path in (str(_here.parent), str(_here)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from common.entrypoints import wsgi_application  # noqa: E402

application = wsgi_application("auth_project.settings")

# Fail at start-up, not at the first login, when the signing key is missing or unusable.
from accounts.keys import signing_key  # noqa: E402

signing_key()
