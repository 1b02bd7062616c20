#!/usr/bin/env bash
# Container entry point: serves Wyoming on port 10200 with voices in (and downloads to) /data.
# Arguments are passed on to the server; it reads WYOMING_PIPER_STREAM_ARGS from the
# environment itself, so that variable needs no handling here.
set -euo pipefail
exec python -m wyoming_piper_stream \
  --uri tcp://0.0.0.0:10200 \
  --data-dir /data \
  --download-dir /data \
  --prebuilt-cache /opt/wyoming-piper-stream/cache \
  "$@"
