#!/usr/bin/env bash
# Builds the tokenizer libFuzzer target with clang-14 (ASan + UBSan) and runs it.
# Usage: scripts/fuzz-tokenizer.sh [RUNS]   (default 100000; -1 = until stopped)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-100000}
out=build-fuzz
mkdir -p "$out/corpus"
cxx=${CXX_FUZZ:-clang++-14}
flags=(-std=c++20 -O1 -g -fno-omit-frame-pointer -I. -DSPDLOG_FMT_EXTERNAL
       -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined)
"$cxx" "${flags[@]}" server/tokenizer/*.cpp tests/fuzz/tokenizer_fuzz.cpp \
  $(pkg-config --cflags --libs libpcre2-8) -lfmt -lspdlog -o "$out/kl_tokenizer_fuzz"
"$out/kl_tokenizer_fuzz" -runs="$runs" -max_len=4096 -timeout=10 "$out/corpus"
