"""What every service's ``manage.py`` and ``<project>/wsgi.py`` do once ``common`` is importable.

Those two files stay in each project (Django, gunicorn, Docker and Kubernetes name them:
``<project>.wsgi:application``); they only put the project folder and the repository root on
``sys.path`` (this package cannot do it: it is not importable before) and call these.
"""

from __future__ import annotations

import os
import sys
from typing import Any


def manage(settings_module: str) -> None:
    """``manage.py``: Django's command line with this service's settings."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", settings_module)
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


def wsgi_application(settings_module: str) -> Any:
    """``wsgi.py``: this service's WSGI application (Django set up)."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", settings_module)
    from django.core.wsgi import get_wsgi_application

    return get_wsgi_application()
