#!/usr/bin/env bash
# klserve's KDA kernels (kl_kda_bench) side by side with fla 0.5.2's Triton chunk_kda /
# fused_recurrent_kda on one GPU in one run: ROOFLINE P5 (chunked prefill, T = 8192 as 1 x 8192
# and varlen 8 x 1024, 32 heads, K = V = 128, bf16, fp32 state; gate / L2 norm / beta included)
# and P4 (decode at batch 1 / 64 / 256, effective TB/s of the fp32 state read + written).
#
# Here (dev machine, no GPU), once:
#   scripts/bench-kda-vs-fla.sh prepare  # fla 0.5.2's python package into .fla/ (git-ignored via
#       # .git/info/exclude), from a git mirror of fla-org/flash-linear-attention: FLA_GIT_DIR,
#       # default /work/.mirror/fla-org+flash-linear-attention/repo (the `fetch` tool with
#       # github:fla-org/flash-linear-attention makes it). fla is never committed.
#   scripts/bench-kda-vs-fla.sh build    # kl_kda_bench for sm_90a, staged with its shared libs
# On the GPU machine, one command (device tool: carry [".gpu-kda-bench", ".fla"], timeout_s 600):
#   bash scripts/bench-kda-vs-fla.sh run [--iters N] [--warmup N] [--only prefill|decode]
#   It runs kl_kda_bench (with a cross-check dump), then fla (same shapes, same warm-up / median,
#   plus a float64 check of both on the dumped inputs), then kl_kda_bench again (the rerun column
#   shows our drift), and prints the side-by-side table last. Logs and JSON lines go to $OUT when
#   set (the device tool brings them back), else to a temporary directory.
# Env: KL_GPU_BUILD (build dir, default build-kda-bench), KL_GPU_STAGE (stage dir, default
# .gpu-kda-bench). The GPU machine needs python3 with torch + triton (einops is not needed).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD="${KL_GPU_BUILD:-build-kda-bench}"
STAGE="${KL_GPU_STAGE:-.gpu-kda-bench}"
FLA_TAG=v0.5.2

case "${1:-}" in
  prepare)
    git_dir="${FLA_GIT_DIR:-/work/.mirror/fla-org+flash-linear-attention/repo}"
    rm -rf .fla && mkdir -p .fla
    git --git-dir="$git_dir" archive "$FLA_TAG" fla | tar -x -C .fla
    # fla.layers / fla.models (nn.Module wrappers, transformers) are optional imports of fla's
    # __init__ and unused here.
    rm -rf .fla/fla/layers .fla/fla/models
    echo "$(git --git-dir="$git_dir" rev-parse "$FLA_TAG^{commit}")" >.fla/COMMIT
    mkdir -p .git/info
    grep -qx '/.fla/' .git/info/exclude 2>/dev/null || echo '/.fla/' >>.git/info/exclude
    echo "fla $FLA_TAG ($(cat .fla/COMMIT)) in .fla/: $(du -sh .fla | cut -f1)"
    ;;
  build)
    cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DKL_ENABLE_CUDA=ON \
      -DKL_ENABLE_GRPC=OFF -DKL_BUILD_TESTS=ON >/dev/null
    cmake --build "$BUILD" --target kl_kda_bench
    rm -rf "$STAGE" && mkdir -p "$STAGE/lib"
    strip -o "$STAGE/kl_kda_bench" "$BUILD/tests/kl_kda_bench"
    # Non-system shared libraries (as scripts/gpu-test.sh; the GPU machine has the CUDA runtime).
    ldd "$BUILD/tests/kl_kda_bench" | awk '/=> \// {print $3}' | while read -r lib; do
      case "$(basename "$lib")" in
        libc.so*|libm.so*|libstdc++.so*|libgcc_s.so*|ld-linux*|libpthread.so*|libdl.so*|librt.so*|libcuda.so*|libcudart.so*) ;;
        *) cp -L "$lib" "$STAGE/lib/" ;;
      esac
    done
    du -sh "$STAGE"
    ;;
  run)
    shift
    [ -x "$STAGE/kl_kda_bench" ] || { echo "no $STAGE/kl_kda_bench: run '$0 build' first"; exit 1; }
    [ -f .fla/fla/__init__.py ] || { echo "no .fla/fla: run '$0 prepare' first"; exit 1; }
    out="${OUT:-$(mktemp -d)}"
    dump="$(mktemp -d)"
    export LD_LIBRARY_PATH="$PWD/$STAGE/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    export PYTHONPATH="$PWD/.fla${PYTHONPATH:+:$PYTHONPATH}"
    export PYTHONUNBUFFERED=1 FLA_DISABLE_BACKEND_DISPATCH=1
    nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,temperature.gpu,power.draw \
      --format=csv,noheader || true
    echo "--- kl_kda_bench (pass 1, with the cross-check dump)"
    "$STAGE/kl_kda_bench" --dump "$dump" "$@" | tee "$out/ours.jsonl"
    echo "--- fla $(cat .fla/COMMIT 2>/dev/null || echo "$FLA_TAG")"
    python3 scripts/kda_fla_bench.py --ours "$out/ours.jsonl" --dump "$dump" \
      --json-out "$out/fla.jsonl" --no-table "$@" 2>&1 | tee "$out/fla.log"
    echo "--- kl_kda_bench (pass 2)"
    "$STAGE/kl_kda_bench" "$@" >"$out/ours2.jsonl"
    rm -rf "$dump"
    python3 scripts/kda_fla_bench.py --ours "$out/ours.jsonl" --ours2 "$out/ours2.jsonl" \
      --fla "$out/fla.jsonl" | tee "$out/table.txt"
    ;;
  *) echo "usage: $0 prepare | build | run [--iters N] [--warmup N] [--only prefill|decode]"; exit 2 ;;
esac
