#!/usr/bin/env bash
# Runs tests/clients/grpc_client_test.mjs (@grpc/grpc-js) against kl_grpc_test_server: starts the
# server, reads its port, runs node, stops the server. Fails loudly when node or packages are missing.
# Usage: run_grpc_node_test.sh SERVER_BINARY SOURCE_DIR
set -u
server_bin=$1
src=$2
clients="$src/tests/clients"
api_key=grpc-test-key

if ! command -v node >/dev/null 2>&1; then
  echo "FAIL: node not found; the gRPC client test needs node 20 and 'npm --prefix tests/clients ci'" >&2
  exit 1
fi
for pkg in @grpc/grpc-js @grpc/proto-loader; do
  if [ ! -f "$clients/node_modules/$pkg/package.json" ]; then
    echo "FAIL: node package $pkg is missing; run 'npm --prefix tests/clients ci'" >&2
    exit 1
  fi
done

out=$(mktemp)
"$server_bin" --api-key "$api_key" >"$out" &
server_pid=$!
cleanup() {
  kill "$server_pid" 2>/dev/null
  wait "$server_pid" 2>/dev/null
  rm -f "$out"
}
trap cleanup EXIT

port=""
for _ in $(seq 1 300); do
  port=$(sed -n 's/^PORT \([0-9]*\)$/\1/p' "$out")
  [ -n "$port" ] && break
  if ! kill -0 "$server_pid" 2>/dev/null; then
    echo "FAIL: the gRPC test server exited before printing its port" >&2
    exit 1
  fi
  sleep 0.1
done
if [ -z "$port" ]; then
  echo "FAIL: the gRPC test server printed no port within 30 s" >&2
  exit 1
fi

node "$clients/grpc_client_test.mjs" "$port" "$api_key"
