#!/usr/bin/env bash
# GPU build-and-test recipe (the `gpu` test label) for a GPU machine that has the CUDA runtime
# but not this project's build dependencies (such as the lent H100/H200 machines).
#   scripts/gpu-test.sh build [targets...]  # here: builds the GPU test binaries for sm_90a and
#                               # stages them stripped, with the non-system shared libraries they
#                               # need and the golden data they read, into .gpu/ (git-ignored)
#   scripts/gpu-test.sh run [catch args...] # on the GPU machine, from the repository root with
#                               # .gpu/ copied (the device tool: carry [".gpu"]): runs every staged
#                               # binary and prints a summary line per binary
# Environment: KL_GPU_BUILD (build dir, default build-gpu), KL_GPU_STAGE (stage dir, default .gpu).
# On a machine that has both a GPU and the dependencies, `ctest --test-dir build -L gpu` is the
# same thing. Timing (2-core dev machine): build ~10 min from scratch; run: about a minute.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD="${KL_GPU_BUILD:-build-gpu}"
STAGE="${KL_GPU_STAGE:-.gpu}"
ALL_TARGETS="kl_gpu_base_tests kl_gpu_kda_tests kl_gpu_kda_chunk_tests kl_gpu_mla_tests kl_gpu_moe_tests kl_gpu_sampling_tests kl_gpu_engine_tests kl_gpu_bench kl_kda_bench"

stage_libs() {  # copies the non-system shared libraries of binary $1 into $STAGE/lib
  ldd "$1" | awk '/=> \// {print $3}' | while read -r lib; do
    case "$(basename "$lib")" in
      libc.so*|libm.so*|libstdc++.so*|libgcc_s.so*|ld-linux*|libpthread.so*|libdl.so*|librt.so*|libcuda.so*|libcudart.so*|libcublas*) ;;
      *) cp -L "$lib" "$STAGE/lib/" ;;
    esac
  done
}

case "${1:-}" in
  build)
    shift
    targets="${*:-$ALL_TARGETS}"
    cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DKL_ENABLE_CUDA=ON \
      -DKL_ENABLE_GRPC=OFF -DKL_BUILD_TESTS=ON >/dev/null
    built=()
    # (The help text is captured first: `grep -q` on a pipe would SIGPIPE cmake under pipefail.)
    help="$(cmake --build "$BUILD" --target help)"
    for t in $targets; do
      if grep -q "^$t:" <<<"$help"; then built+=("$t"); fi
    done
    cmake --build "$BUILD" --target "${built[@]}"
    rm -rf "$STAGE" && mkdir -p "$STAGE/lib"
    for t in "${built[@]}"; do
      strip -o "$STAGE/$t" "$BUILD/tests/$t"
      stage_libs "$BUILD/tests/$t"
    done
    # The real model's config, for the benchmarks (kl_gpu_bench --config).
    cp tests/data/kimi_linear_48b_a3b_config.json "$STAGE/"
    # The golden cases the tests read: tiny-a from ../shared and the project's own variants.
    mkdir -p "$STAGE/golden"
    [ -d ../shared/golden/tiny-a ] && cp -r ../shared/golden/tiny-a "$STAGE/golden/"
    cp -r tests/data/golden/* "$STAGE/golden/"
    # The server itself, for `serve-check` (HTTP on the GPU).
    if [ -z "${KL_GPU_NO_SERVER:-}" ]; then
      cmake --build "$BUILD" --target klserve kl-make-checkpoint
      strip -o "$STAGE/klserve" "$BUILD/server/klserve"
      strip -o "$STAGE/kl-make-checkpoint" "$BUILD/server/kl-make-checkpoint"
      stage_libs "$BUILD/server/klserve"
    fi
    du -sh "$STAGE"
    ;;
  run)
    shift
    ls "$STAGE"/kl_gpu_*_tests >/dev/null 2>&1 || { echo "nothing staged in $STAGE: run 'scripts/gpu-test.sh build' first"; exit 1; }
    nvidia-smi --query-gpu=name,compute_cap,driver_version,memory.total --format=csv,noheader || true
    export LD_LIBRARY_PATH="$PWD/$STAGE/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    export KL_GOLDEN_DIR="$PWD/$STAGE/golden"
    status=0
    summary=()
    # Tests tagged [fatal] poison the CUDA context of their process on purpose (a device fault):
    # each runs in a process of its own, after the others.
    for bin in "$STAGE"/kl_gpu_*_tests; do
      t0=$(date +%s%N)
      if "$bin" --reporter compact "${@:-~[fatal]~[.]}"; then r=passed; else r="FAILED ($?)"; status=1; fi
      summary+=("$(basename "$bin"): $r in $(( ($(date +%s%N) - t0) / 1000000 )) ms")
      if [ $# -eq 0 ]; then
        while IFS= read -r name; do
          [ -n "$name" ] || continue
          if "$bin" --reporter compact "$name"; then r=passed; else r="FAILED ($?)"; status=1; fi
          summary+=("$(basename "$bin") \"$name\": $r")
        done < <("$bin" --list-test-names-only "[fatal]" 2>/dev/null | grep -v '^$' || true)
      fi
    done
    echo "=== GPU test summary ==="
    printf '%s\n' "${summary[@]}"
    exit $status
    ;;
  serve-check)
    # klserve --device cuda serves tiny-a (token ids, greedy) and the embedded default model
    # (text, chat) over HTTP; tiny-a's completions must reproduce golden.json's greedy ids.
    [ -x "$STAGE/klserve" ] || { echo "no $STAGE/klserve: run 'scripts/gpu-test.sh build' first"; exit 1; }
    export LD_LIBRARY_PATH="$PWD/$STAGE/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    export KLSERVE_CACHE_DIR="$(mktemp -d)"
    python3 scripts/gpu_serve_check.py "$STAGE/klserve" "$STAGE/golden/tiny-a"
    ;;
  *) echo "usage: $0 build [targets...] | run [catch args...] | serve-check"; exit 2 ;;
esac
