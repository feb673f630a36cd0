"""Settings of the gateway service: shared defaults from `common`, then its own."""

from pathlib import Path

from common.settings import defaults

BASE_DIR = Path(__file__).resolve().parent.parent

globals().update(defaults(service="gateway", base_dir=BASE_DIR, project="gateway_project"))
