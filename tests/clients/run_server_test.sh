#!/usr/bin/env bash
# Starts klserve on a free port, runs a node client script against it, then stops the server
# with SIGTERM and requires a clean exit (graceful shutdown, exit code 0).
#   run_server_test.sh KLSERVE_BINARY WORK_DIR CLIENT_SCRIPT [SERVE_ARGS...] [-- CLIENT_ARGS...]
set -euo pipefail
klserve=$1 work=$2 script=$3
shift 3
serve_args=() client_args=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do serve_args+=("$1"); shift; done
[ "${1:-}" = "--" ] && shift && client_args=("$@")
here=$(cd "$(dirname "$0")" && pwd)
command -v node >/dev/null || { echo "FAIL: node is not installed (scripts/install-deps.sh)"; exit 1; }
[ -d "$here/node_modules/openai" ] || { echo "FAIL: run 'npm --prefix tests/clients ci' first"; exit 1; }
mkdir -p "$work"
log="$work/server.log"
KLSERVE_CACHE_DIR="$work/cache" "$klserve" serve "${serve_args[@]}" --port 0 --grpc-port 0 \
  >"$log" 2>&1 &
pid=$!
trap 'kill -9 $pid 2>/dev/null || true' EXIT
port=""
for _ in $(seq 1 600); do  # the first run creates the default model
  port=$(sed -n 's/.*listening: HTTP http:\/\/[^:]*:\([0-9]*\).*/\1/p' "$log" | head -1)
  [ -n "$port" ] && grep -q "\[info\] ready$" "$log" && break
  kill -0 $pid 2>/dev/null || { echo "FAIL: klserve exited during startup:"; cat "$log"; exit 1; }
  sleep 0.2
done
[ -n "$port" ] || { echo "FAIL: klserve did not start:"; cat "$log"; exit 1; }
status=0
node "$script" "http://127.0.0.1:$port" "${client_args[@]}" || status=$?
kill -TERM $pid
if ! wait $pid; then echo "FAIL: klserve did not exit cleanly on SIGTERM:"; tail -20 "$log"; exit 1; fi
grep -q "stopped" "$log" || { echo "FAIL: no 'stopped' line after SIGTERM"; tail -20 "$log"; exit 1; }
[ $status -eq 0 ] || { echo "server log tail:"; tail -30 "$log"; }
exit $status
