"""Settings of the analysis service: shared defaults from `common`, then its own."""

from pathlib import Path

from common.settings import defaults

BASE_DIR = Path(__file__).resolve().parent.parent

globals().update(defaults(service="analysis", base_dir=BASE_DIR, project="analysis_project"))
