#!/usr/bin/env bash
# Tokenizer encode throughput, klserve vs js-tiktoken, same text and vocabulary, one core each.
# Usage: scripts/bench-tokenizer.sh [BUILD_DIR]   (default build/; needs node + npm ci in tests/clients)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
cmake --build "$build" --target kl_tokenizer_jscheck kl_tokenizer_bench
ctest --test-dir "$build" -R tokenizer_js_ --output-on-failure >/dev/null
dir="$build/tests/tiktoken_js"
taskset -c 0 "$build/tests/bench/kl_tokenizer_bench" "$dir"
taskset -c 0 node tests/clients/tiktoken_bench.mjs "$dir"
