#!/usr/bin/env bash
# GPU build-and-test recipe (the `gpu` test label) for a GPU machine that has the CUDA runtime
# but not this project's build dependencies (such as the lent H100/H200 machines).
#   scripts/gpu-test.sh build   # here: builds kl_gpu_tests for sm_90a into build-gpu/ and stages
#                               # the stripped binary, the non-system shared libraries it needs
#                               # and the golden data it reads into .gpu/ (git-ignored)
#   scripts/gpu-test.sh run     # on the GPU machine, from the repository root with .gpu/ copied
#                               # (the device tool: carry [".gpu"]): runs every GPU test
# On a machine that has both a GPU and the dependencies, `ctest --test-dir build -L gpu` is the
# same thing. Timing (2-core dev machine): build ~3 min the first time; run: seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
  build)
    cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DKL_ENABLE_CUDA=ON \
      -DKL_ENABLE_GRPC=OFF -DKL_BUILD_TESTS=ON >/dev/null
    cmake --build build-gpu --target kl_gpu_tests
    rm -rf .gpu && mkdir -p .gpu/lib
    strip -o .gpu/kl_gpu_tests build-gpu/tests/kl_gpu_tests
    # Shared libraries that a stock Ubuntu 24.04 + CUDA machine lacks (or has in another
    # version): everything but libc/libstdc++/libm/libgcc and the CUDA driver/runtime.
    ldd build-gpu/tests/kl_gpu_tests | awk '/=> \// {print $3}' | while read -r lib; do
      case "$(basename "$lib")" in
        libc.so*|libm.so*|libstdc++.so*|libgcc_s.so*|ld-linux*|libpthread.so*|libdl.so*|librt.so*|libcuda.so*|libcudart.so*) ;;
        *) cp -L "$lib" .gpu/lib/ ;;
      esac
    done
    if [ -d ../shared/golden ]; then
      mkdir -p .gpu/golden && cp -r ../shared/golden/tiny-a .gpu/golden/
    fi
    du -sh .gpu
    ;;
  run)
    [ -x .gpu/kl_gpu_tests ] || { echo "no .gpu/kl_gpu_tests: run 'scripts/gpu-test.sh build' first"; exit 1; }
    nvidia-smi --query-gpu=name,compute_cap,driver_version --format=csv,noheader || true
    export LD_LIBRARY_PATH="$PWD/.gpu/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    export KL_GOLDEN_DIR="$PWD/.gpu/golden"
    t0=$(date +%s)
    .gpu/kl_gpu_tests --reporter compact "${@:2}"
    echo "gpu tests: $(( $(date +%s) - t0 )) s"
    ;;
  *) echo "usage: $0 build|run"; exit 2 ;;
esac
