#!/usr/bin/env bash
# Sets up and runs the whole test suite: installs dependencies, builds (normal build, then a
# GCC ASan+UBSan build with CUDA off), runs ctest in both. Prints each stage's wall time.
# Usage: scripts/test.sh            (from anywhere; uses build/ and build-asan/ in the repo)
#        KL_SKIP_DEPS=1 scripts/test.sh   to skip the apt step on a prepared machine
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
jobs=${KL_JOBS:-$(nproc)}
declare -a stage_names stage_secs
t_all=$(date +%s)

stage() {  # stage NAME CMD...: runs CMD, records and prints its wall time
  local name=$1; shift
  local t0=$(date +%s)
  echo "=== [stage] ${name} ==="
  "$@"
  local dt=$(( $(date +%s) - t0 ))
  stage_names+=("$name"); stage_secs+=("$dt")
  echo "=== [stage] ${name}: ${dt}s ==="
}

summary() {
  echo "=== stage wall times ==="
  for i in "${!stage_names[@]}"; do printf '  %-28s %6ss\n' "${stage_names[$i]}" "${stage_secs[$i]}"; done
  printf '  %-28s %6ss\n' total "$(( $(date +%s) - t_all ))"
}
trap summary EXIT

if [ "${KL_SKIP_DEPS:-0}" != "1" ]; then
  stage deps bash scripts/install-deps.sh
fi
if [ -f tests/clients/package.json ]; then
  stage npm-install npm --prefix tests/clients ci --no-audit --no-fund
fi

gen=()
command -v ninja >/dev/null && gen=(-G Ninja)

stage configure cmake -S . -B build "${gen[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKL_BUILD_TESTS=ON
stage build cmake --build build -j "$jobs"
stage tests ctest --test-dir build --output-on-failure -j "$jobs"

if [ "${KL_SKIP_ASAN:-0}" != "1" ]; then
  stage configure-asan cmake -S . -B build-asan "${gen[@]}" -DCMAKE_BUILD_TYPE=Debug \
    -DKL_ENABLE_CUDA=OFF -DKL_SANITIZE=ON -DKL_BUILD_TESTS=ON -DCMAKE_CXX_FLAGS=-O1
  stage build-asan cmake --build build-asan -j "$jobs"
  # Golden tests are numerically heavy: under sanitizers run the unit tier only.
  stage tests-asan env ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
    ctest --test-dir build-asan --output-on-failure -j "$jobs" -L unit
fi
