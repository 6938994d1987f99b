#!/usr/bin/env python3
"""klserve --device cuda through its HTTP API on a GPU machine (stdlib only; the GPU machines have
no node). Called by `scripts/gpu-test.sh serve-check`:
    python3 scripts/gpu_serve_check.py KLSERVE_BINARY GOLDEN_CASE_DIR
Checks, each on a fresh server:
  1. tiny-a in float32 (--skip-tokenizer-init): every prompt's greedy ids via /v1/completions,
     sequentially and all at once; SIGTERM exits 0.
  2. tiny-a in bfloat16: every request answers 200 with the requested number of tokens.
  3. the embedded default model in bfloat16: chat completion, streaming SSE, /metrics.
  4. an injected device fault (KLSERVE_INJECT_CUDA_FAULT_AT_STEP): the in-flight request gets an
     error, /health stops answering 200 and the process exits non-zero.
"""
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

BIN, CASE = sys.argv[1], sys.argv[2]
results = []


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(base, path, body=None, timeout=120):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data,
                                 headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


class Server:
    def __init__(self, args, env=None, name="server"):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = open(f"/tmp/klserve-{name}.log", "w")
        self.proc = subprocess.Popen([BIN, "serve", *args, "--port", str(self.port), "--device",
                                      "cuda"], stdout=self.log, stderr=subprocess.STDOUT,
                                     env={**os.environ, **(env or {})})
        self.name = name

    def wait_ready(self, timeout=300):
        t0 = time.time()
        while time.time() - t0 < timeout:
            if self.proc.poll() is not None:
                return False
            try:
                if request(self.base, "/health", timeout=2)[0] == 200:
                    return True
            except OSError:
                pass
            time.sleep(0.5)
        return False

    def stop(self, timeout=60):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return None

    def tail(self, n=30):
        self.log.flush()
        with open(self.log.name) as f:
            return "".join(f.readlines()[-n:])


def check(name, ok, detail=""):
    results.append((name, ok))
    print(f"{'PASS' if ok else 'FAIL'} {name}{': ' + detail if detail else ''}", flush=True)


golden = json.load(open(os.path.join(CASE, "golden.json")))
model = os.path.join(CASE, "model")


def completion(base, p):
    return request(base, "/v1/completions", {
        "prompt": p["input_ids"], "max_tokens": len(p["greedy_ids"]), "temperature": 0,
        "ignore_eos": True, "return_token_ids": True})


# 1. tiny-a, float32: golden greedy ids, sequential and concurrent.
s = Server([model, "--skip-tokenizer-init", "--dtype", "float32", "--max-model-len", "512",
            "--gpu-memory-utilization", "0.3"], name="tiny-a-fp32")
if not s.wait_ready():
    check("tiny-a fp32 server starts", False, s.tail())
else:
    for line in open(s.log.name):
        if "GPU memory plan" in line:
            print(line.strip())
    for p in golden["prompts"]:
        st, body = completion(s.base, p)
        ids = json.loads(body)["choices"][0].get("token_ids") if st == 200 else None
        check(f"tiny-a fp32 {p['name']} greedy ids", ids == p["greedy_ids"], "" if ids ==
              p["greedy_ids"] else f"status {st} got {ids} want {p['greedy_ids']}")
    got = {}
    threads = [threading.Thread(target=lambda p=p: got.__setitem__(p["name"], completion(s.base, p)))
               for p in golden["prompts"]]
    [t.start() for t in threads]
    [t.join() for t in threads]
    same = all(st == 200 and json.loads(b)["choices"][0]["token_ids"] == p["greedy_ids"]
               for p in golden["prompts"] for st, b in [got[p["name"]]])
    check("tiny-a fp32 all prompts concurrently reproduce the greedy ids", same)
    check("tiny-a fp32 SIGTERM exits 0", s.stop() == 0, s.tail(5))

# 2. tiny-a, bfloat16.
s = Server([model, "--skip-tokenizer-init", "--max-model-len", "512",
            "--gpu-memory-utilization", "0.3"], name="tiny-a-bf16")
if not s.wait_ready():
    check("tiny-a bf16 server starts", False, s.tail())
else:
    equal = total = 0
    ok = True
    for p in golden["prompts"]:
        st, body = completion(s.base, p)
        ok &= st == 200
        if st == 200:
            ids = json.loads(body)["choices"][0]["token_ids"]
            ok &= len(ids) == len(p["greedy_ids"])
            n = 0
            while n < len(ids) and ids[n] == p["greedy_ids"][n]:
                n += 1
            equal += n
            total += len(p["greedy_ids"])
    check("tiny-a bf16 every completion answered", ok,
          f"greedy tokens equal to the fp32 reference before the first divergence: {equal}/{total}")
    check("tiny-a bf16 SIGTERM exits 0", s.stop() == 0, s.tail(5))

# 3. The embedded default model (text, chat template), bfloat16.
s = Server(["--gpu-memory-utilization", "0.3"], name="default")
if not s.wait_ready():
    check("embedded default server starts", False, s.tail())
else:
    st, body = request(s.base, "/v1/chat/completions", {
        "model": "klserve-default", "messages": [{"role": "user", "content": "Hello there"}],
        "max_tokens": 16, "temperature": 0.7, "seed": 1})
    ok = st == 200 and json.loads(body)["usage"]["completion_tokens"] > 0
    check("default chat completion", ok, body[:300])
    req = urllib.request.Request(s.base + "/v1/completions", data=json.dumps({
        "model": "klserve-default", "prompt": "The GPU says", "max_tokens": 12, "stream": True,
        "ignore_eos": True}).encode(), headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        events = [l for l in r.read().decode().splitlines() if l.startswith("data: ")]
    check("default streaming completion (SSE)", len(events) >= 2 and events[-1] == "data: [DONE]",
          f"{len(events)} events")
    st, body = request(s.base, "/metrics")
    check("default /metrics", st == 200 and "vllm:generation_tokens_total" in body)
    check("default SIGTERM exits 0", s.stop() == 0, s.tail(5))

# 4. An injected device fault is fatal.
s = Server([model, "--skip-tokenizer-init", "--max-model-len", "512",
            "--gpu-memory-utilization", "0.3"], env={"KLSERVE_INJECT_CUDA_FAULT_AT_STEP": "3"},
           name="fault")
if not s.wait_ready():
    check("fault server starts", False, s.tail())
else:
    p = golden["prompts"][2]
    st, body = completion(s.base, p)
    # Non-streamed: nothing was sent before the failure, so it is a 500 with the error envelope.
    failed = st == 500 and "error" in json.loads(body)
    check("fault: the in-flight request gets a 500 error", failed, f"status {st} {body[:200]}")
    try:
        health = request(s.base, "/health", timeout=2)[0]
    except OSError:
        health = "closed"
    check("fault: /health no longer 200", health != 200, f"{health}")
    try:
        code = s.proc.wait(30)
    except subprocess.TimeoutExpired:
        code = None
        s.proc.kill()
    check("fault: the process exits non-zero", code not in (0, None), f"exit code {code}")
    print(s.tail(8))

passed = sum(ok for _, ok in results)
print(f"=== serve-check: {passed}/{len(results)} passed ===")
sys.exit(0 if passed == len(results) else 1)
