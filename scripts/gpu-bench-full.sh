#!/usr/bin/env bash
# The full-size Kimi-Linear-48B-A3B on one GPU (an nvidia-h200: the bf16 weights are 98 GB),
# with dummy weights generated on the GPU: the performance figures of tests/bench/RESULTS.md.
# From the repository root on the GPU machine, with the stage dir (scripts/gpu-test.sh build)
# carried:
#   bash scripts/gpu-bench-full.sh bench   # ceilings (copy, cuBLAS GEMM), decode TPOT / tok/s at
#                                          # batch 1/8/64/256 on 4K context, prefill 1x4K and 8x4K,
#                                          # the kernel-class share of each decode step
#   bash scripts/gpu-bench-full.sh serve   # klserve --load-format dummy --device cuda with the real
#                                          # config: memory plan, then real requests over HTTP
#   bash scripts/gpu-bench-full.sh load N  # an N-layer multi-shard dummy checkpoint at the real
#                                          # per-layer shapes written to disk, then loaded by
#                                          # klserve (progress bar, disk-to-GPU GB/s)
# Environment: KL_GPU_STAGE (default .gpu). Output also goes to $OUT when set (the device tool).
set -euo pipefail
cd "$(dirname "$0")/.."
STAGE="${KL_GPU_STAGE:-.gpu}"
CONFIG="$STAGE/kimi_linear_48b_a3b_config.json"
export LD_LIBRARY_PATH="$PWD/$STAGE/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
LOG="${OUT:-/tmp}"
healthy() {  # curl may be missing on the GPU machine; python3 is there
  python3 -c "import sys, urllib.request; urllib.request.urlopen(f'http://127.0.0.1:{sys.argv[1]}/health', timeout=2)" "$1" 2>/dev/null
}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
echo "commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown), $(date -u +%F)"

case "${1:-}" in
  bench)
    "$STAGE/kl_gpu_bench" --config "$CONFIG" --context 4096 --batches 1,8,64,256 --steps 20 \
      --prefill 4096 --prefill-seqs 1,8 --mem 0.93 --max-batched 16384 2>&1 | tee "$LOG/gpu-bench.log"
    ;;
  serve)
    dir=$(mktemp -d)
    cp "$CONFIG" "$dir/config.json"
    port=8123
    "$STAGE/klserve" serve "$dir" --device cuda --load-format dummy --skip-tokenizer-init \
      --gpu-memory-utilization 0.93 --max-model-len 8192 --port $port >"$LOG/serve-full.log" 2>&1 &
    pid=$!
    t0=$(date +%s)
    until healthy $port; do
      kill -0 $pid 2>/dev/null || { echo "klserve exited"; tail -20 "$LOG/serve-full.log"; exit 1; }
      sleep 1
    done
    echo "ready after $(( $(date +%s) - t0 )) s"
    grep -E "GPU memory plan|weights:|engine ready" "$LOG/serve-full.log"
    python3 - "$port" <<'PY'
import json, sys, threading, time, urllib.request
port = sys.argv[1]
def complete(prompt, n):
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/completions", data=json.dumps({
        "prompt": prompt, "max_tokens": n, "temperature": 0, "ignore_eos": True,
        "return_token_ids": True}).encode(), headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=300) as r:
        return r.status, json.loads(r.read())
t0 = time.time()
st, body = complete(list(range(1000, 1000 + 4096)), 64)
dt = time.time() - t0
print(f"one request, 4096-token prompt, 64 tokens: status {st}, {len(body['choices'][0]['token_ids'])} tokens in {dt:.2f} s; usage {body['usage']}")
out = []
def worker(i):
    out.append(complete([(7 * i + j) % 160000 for j in range(512)], 128))
t0 = time.time()
ts = [threading.Thread(target=worker, args=(i,)) for i in range(32)]
[t.start() for t in ts]
[t.join() for t in ts]
dt = time.time() - t0
ok = sum(1 for st, b in out if st == 200 and len(b["choices"][0]["token_ids"]) == 128)
print(f"32 concurrent requests, 512-token prompts, 128 tokens each: {ok}/32 complete in {dt:.1f} s ({32 * 128 / dt:.0f} output tok/s end to end)")
PY
    python3 -c "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:$port/metrics').read().decode())" | grep -E "^vllm:(generation_tokens_total|prompt_tokens_total)" || true
    kill -TERM $pid; wait $pid && echo "klserve exited 0 after SIGTERM"
    ;;
  load)
    layers="${2:-8}"
    dir=$(mktemp -d -p "${TMPDIR:-/tmp}")
    python3 - "$CONFIG" "$dir/config.json" "$layers" <<'PY'
import json, sys
c = json.load(open(sys.argv[1])); n = int(sys.argv[3])
la = c["linear_attn_config"]
la["kda_layers"] = [l for l in la["kda_layers"] if l <= n]
la["full_attn_layers"] = [l for l in la["full_attn_layers"] if l <= n]
c["num_hidden_layers"] = n
json.dump(c, open(sys.argv[2], "w"), indent=1)
PY
    t0=$(date +%s)
    "$STAGE/kl-make-checkpoint" --config "$dir/config.json" --out "$dir" --seed 3 --shards 8
    echo "wrote $(du -sh "$dir" | cut -f1) in $(( $(date +%s) - t0 )) s"
    sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || echo "(page cache not dropped)"
    port=8124
    t0=$(date +%s.%N)
    "$STAGE/klserve" serve "$dir" --device cuda --skip-tokenizer-init --gpu-memory-utilization 0.9 \
      --max-model-len 4096 --port $port >"$LOG/load.log" 2>&1 &
    pid=$!
    until healthy $port; do
      kill -0 $pid 2>/dev/null || { echo "klserve exited"; tail -20 "$LOG/load.log"; exit 1; }
      sleep 0.5
    done
    t1=$(date +%s.%N)
    bytes=$(python3 -c "import json;print(json.load(open('$dir/model.safetensors.index.json'))['metadata']['total_size'])")
    python3 -c "print(f'ready in {$t1-$t0:.1f} s: {$bytes/1e9:.1f} GB from disk to GPU at {$bytes/1e9/($t1-$t0):.2f} GB/s (start to /health 200)')"
    grep -E "uploading weights|GPU memory plan" "$LOG/load.log" | tail -3
    kill -TERM $pid; wait $pid || true
    rm -rf "$dir"
    ;;
  *) echo "usage: $0 bench | serve | load [LAYERS]"; exit 2 ;;
esac
