#!/bin/sh
# Container entry point of every service image (infra/Dockerfile).
#   web        gunicorn serving <SERVICE>_project on $PORT (settings: common/gunicorn_conf.py:
#              WEB_CONCURRENCY workers, GUNICORN_THREADS threads each, BIND_HOST, PORT)
#   anything   run as given (celery worker, manage.py outbox_relay, migrate, flower, a shell...)
set -eu

: "${SERVICE:?SERVICE is not set (the image is built with --build-arg SERVICE=...)}"

# prometheus_client multiprocess mode: the folder must start empty, or the figures of processes
# from a previous run (same container, restarted) would be summed in.
if [ -n "${PROMETHEUS_MULTIPROC_DIR:-}" ]; then
    mkdir -p "${PROMETHEUS_MULTIPROC_DIR}"
    find "${PROMETHEUS_MULTIPROC_DIR}" -mindepth 1 -delete
fi

if [ "$#" -eq 0 ] || [ "$1" = "web" ]; then
    # No control socket: the app user's home (/app) is read-only.
    exec gunicorn --config /app/common/gunicorn_conf.py --no-control-socket \
        "${SERVICE}_project.wsgi:application"
fi
exec "$@"
