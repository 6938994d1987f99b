#!/usr/bin/env bash
# Serving benchmark (issue 5): the load generator at concurrency 1, 8, 32 against (1) klserve with
# the embedded default model on CPU and (2) the same HTTP stack over a no-op executor, whose
# tokens/s gives the server's own cost per streamed token. Needs a built tree (build/).
#   scripts/bench-serving.sh [BUILD_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

wait_port() {  # wait_port LOG PATTERN -> prints the port
  for _ in $(seq 1 600); do
    p=$(sed -n "$2" "$1" | head -1)
    [ -n "$p" ] && { echo "$p"; return; }
    sleep 0.2
  done
  echo "server did not start: $(cat "$1")" >&2; exit 1
}

echo "== klserve, embedded default model, CPU ($(nproc) cores) =="
KLSERVE_CACHE_DIR="$work/cache" "$build/server/klserve" serve --port 0 --grpc-port 0 \
  --kv-cache-space 0.5 >"$work/klserve.log" 2>&1 &
port=$(wait_port "$work/klserve.log" 's/.*listening: HTTP http:\/\/[^:]*:\([0-9]*\).*/\1/p')
until curl -fs "http://127.0.0.1:$port/health" >/dev/null; do sleep 0.2; done  # 503 while loading
node tests/bench/load_gen.mjs "http://127.0.0.1:$port" --concurrency 1,8,32 --max-tokens 64
kill -TERM %1; wait %1 || true

echo "== the same HTTP stack over a no-op executor (server overhead) =="
"$build/tests/bench/kl_serving_overhead_server" >"$work/noop.log" 2>&1 &
port=$(wait_port "$work/noop.log" 's/^PORT \([0-9]*\)/\1/p')
node tests/bench/load_gen.mjs "http://127.0.0.1:$port" --concurrency 1,8,32 --max-tokens 256
