"""The analysis worker's Celery app: ``celery -A analysis_project worker -Q analysis.events``."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "analysis_project.settings")

# Before anything imports prometheus_client: a worker process counts in multiprocess mode.
from analysis_project import worker

worker.prepare_metrics_dir()

from common.celery_utils import make_app  # noqa: E402

app = make_app("analysis_project")
