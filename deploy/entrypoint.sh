#!/bin/sh
# Container entrypoint: every flag comes from KLSERVE_* environment variables (see
# `klserve serve --help`); arguments given to the container are appended. exec keeps klserve as
# PID 1's direct child so SIGTERM reaches it and it drains gracefully.
set -e
if [ -n "${KLSERVE_MODEL:-}" ]; then
  exec /usr/local/bin/klserve serve "$KLSERVE_MODEL" "$@"
fi
exec /usr/local/bin/klserve serve "$@"
