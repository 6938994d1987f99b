#!/usr/bin/env python3
"""fla 0.5.2's Triton KDA kernels at the shapes of tests/bench/kda_bench.cu, timed the same way,
and the side-by-side table against kl_kda_bench's JSON lines. Run by scripts/bench-kda-vs-fla.sh
(which sets PYTHONPATH to the fla source); see that script for the one-command recipe.

  kda_fla_bench.py --ours OURS.jsonl [--dump DIR] [--warmup N] [--iters N] [--only prefill|decode]
                   [--json-out FLA.jsonl] [--no-table]     # runs fla, prints the table
  kda_fla_bench.py --ours OURS.jsonl [--ours2 OURS2.jsonl] --fla FLA.jsonl  # the table only

fla variants (Kimi-Linear: 32 heads, K = V = 128, bf16 q/k/v, fp32 V-major state, softplus gate):
  prefill fused  chunk_kda(use_qk_l2norm_in_kernel, use_gate_in_kernel with A_log/dt_bias,
                 use_beta_sigmoid_in_kernel, state_v_first, initial_state, output_final_state)
                 from raw q/k, the bf16 f_b_proj output f and the bf16 b_proj output b: the same
                 work as our "unit" (l2norm q, l2norm k, gate, beta, kda_chunked_cuda).
  prefill core   chunk_kda on pre-normalised q/k, fp32 g and beta (our "core").
                 Both timed eager (Python calls) and as a CUDA graph of 4 calls (GPU time only,
                 variants fused_graph / core_graph: the table's comparison uses these).
  decode fused   fused_recurrent_kda_fwd with the same fusions, the state updated in place in a
                 pool through ssm_state_indices (the kernel behind fused_recurrent_kda, called as
                 vLLM / SGLang call it for decode).
  decode core    the same kernel on pre-normalised q/k and precomputed g / beta.
  decode api     the public fused_recurrent_kda (fused flags), final state in a new tensor.
--dump DIR: checks fla and our outputs (written by kl_kda_bench --dump DIR) against a float64
reference on the same inputs.
"""
import argparse
import json
import math
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

H, K, V = 32, 128, 128
L2_EPS = 1e-6
SCALE = K ** -0.5
STATE_BYTES_PER_SEQ = H * V * K * 4


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# ---- timing (as kda_bench.cu: events per sample, warm-up, median)

def summarize(ms, calls):
    ms = sorted(ms)
    return {"median_ms": ms[len(ms) // 2] / calls, "min_ms": ms[0] / calls,
            "max_ms": ms[-1] / calls, "samples": len(ms), "calls_per_sample": calls}


def time_eager(fn, warmup, iters):
    for _ in range(warmup):
        fn()
    ev = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
          for _ in range(iters)]
    for a, b in ev:
        a.record()
        fn()
        b.record()
    torch.cuda.synchronize()
    return summarize([a.elapsed_time(b) for a, b in ev], 1)


def time_graph(fn, calls, warmup, iters):
    """A CUDA graph of `calls` calls fn(j), replayed once per sample."""
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for j in range(calls):  # compiles and autotunes outside the capture
            fn(j)
    torch.cuda.current_stream().wait_stream(s)
    torch.cuda.synchronize()
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        for j in range(calls):
            fn(j)
    st = time_eager(g.replay, warmup, iters)
    for key in ("median_ms", "min_ms", "max_ms"):
        st[key] /= calls
    st["calls_per_sample"] = calls
    return st


# ---- inputs (same distributions as kda_bench.cu)

def gate_params(gen):
    a_log = torch.log(torch.empty(H, device="cuda").uniform_(1.0, 16.0, generator=gen))
    dt_bias = torch.randn(H * K, device="cuda", generator=gen) * 0.5
    return a_log, dt_bias


def randn(shape, gen, dtype=torch.bfloat16, std=1.0):
    return (torch.randn(shape, device="cuda", generator=gen) * std).to(dtype)


def precompute(q, k, f, b, a_log, dt_bias):
    """What our prologue computes: bf16 L2-normalised q/k, fp32 g and beta."""
    def l2n(x):
        x32 = x.float()
        return (x32 / torch.sqrt((x32 * x32).sum(-1, keepdim=True) + L2_EPS)).to(x.dtype)
    g = -torch.exp(a_log).view(H, 1) * F.softplus(f.float() + dt_bias.view(H, K))  # f [..., H, K]
    return l2n(q), l2n(k), g.contiguous(), torch.sigmoid(b.float()).contiguous()


def rotation_sets(batch):
    l2 = torch.cuda.get_device_properties(0).L2_cache_size
    return max(1, math.ceil(4.0 * l2 / (batch * STATE_BYTES_PER_SEQ)))


def record(kind, case, variant, seqs, tokens, st, includes):
    s = st["median_ms"] * 1e-3
    state_bytes = 2 * seqs * STATE_BYTES_PER_SEQ
    r = {"impl": "fla", "kind": kind, "case": case, "variant": variant, "num_seqs": seqs,
         "tokens": tokens, **st, "tokens_per_s": tokens / s, "state_bytes": state_bytes,
         "state_tbps": state_bytes / s * 1e-12, "includes": includes}
    print(json.dumps(r), flush=True)
    return r


# ---- fla runs

def bench_prefill(fla_kda, case, lens, warmup, iters, gen):
    chunk_kda = fla_kda.chunk_kda
    n, seqs = sum(lens), len(lens)
    q, k, v = (randn((1, n, H, K), gen) for _ in range(3))
    f = randn((1, n, H, K), gen)
    b = randn((1, n, H), gen)
    a_log, dt_bias = gate_params(gen)
    h0 = torch.randn(seqs, H, V, K, device="cuda", generator=gen) * 0.1
    cu = cu_cpu = None
    if seqs > 1:
        cu_cpu = torch.tensor([0] + list(np.cumsum(lens)), dtype=torch.long)
        cu = cu_cpu.cuda()
    qn, kn, g, beta = precompute(q, k, f, b, a_log, dt_bias)
    common = dict(scale=SCALE, initial_state=h0, output_final_state=True, state_v_first=True,
                  cu_seqlens=cu, cu_seqlens_cpu=cu_cpu)
    variants = {
        "fused": (lambda: chunk_kda(q, k, v, f, b, A_log=a_log, dt_bias=dt_bias,
                                    use_qk_l2norm_in_kernel=True, use_gate_in_kernel=True,
                                    use_beta_sigmoid_in_kernel=True, **common),
                  "chunk_kda with q/k L2 norm, gate (A_log, dt_bias, softplus) and beta sigmoid "
                  "in kernel; fp32 initial state in, final state out"),
        "core": (lambda: chunk_kda(qn, kn, v, g, beta, **common),
                 "chunk_kda on pre-normalised q/k, precomputed fp32 g and beta"),
    }
    out = []
    for variant, (fn, includes) in variants.items():
        log(f"fla {case} {variant} (eager; the first call compiles and autotunes)")
        out.append(record("prefill", case, variant, seqs, n, time_eager(fn, warmup, iters),
                          includes + "; eager Python calls"))
    # chunk_kda is ~10 launches from Python: eager calls can leave the GPU idle between them.
    # A CUDA graph of 4 calls gives its GPU time alone (the figure the comparison uses).
    for variant, (fn, includes) in variants.items():
        log(f"fla {case} {variant} (CUDA graph)")
        try:
            st = time_graph(lambda j: fn(), 4, warmup, iters)
        except Exception as e:  # noqa: BLE001 - report and fall back to the eager figure
            log(f"  graph capture failed ({e!r}); the table uses the eager timing")
            torch.cuda.synchronize()
            continue
        out.append(record("prefill", case, variant + "_graph", seqs, n, st,
                          includes + "; CUDA graph replay"))
    return out


def bench_decode(fla_kda, batch, warmup, iters, gen):
    from fla.ops.kda.fused_recurrent import fused_recurrent_kda_fwd
    case = f"decode_b{batch}"
    sets = rotation_sets(batch)
    calls = max(sets, 16)
    q, k, v = (randn((batch, 1, H, K), gen) for _ in range(3))
    f = randn((batch, 1, H, K), gen)
    b = randn((batch, 1, H), gen)
    a_log, dt_bias = gate_params(gen)
    pool = torch.randn(sets * batch, H, V, K, device="cuda", generator=gen) * 0.1
    idx = [torch.arange(j * batch, (j + 1) * batch, device="cuda", dtype=torch.int32)
           for j in range(sets)]
    o = torch.empty_like(v)
    qn, kn, g, beta = precompute(q, k, f, b, a_log, dt_bias)
    fused = dict(use_qk_l2norm_in_kernel=True, use_gate_in_kernel=True,
                 use_beta_sigmoid_in_kernel=True)
    out = []
    log(f"fla {case} fused / core / api ({sets} state sets, {calls} calls per graph)")

    def fused_call(j):
        fused_recurrent_kda_fwd(q, k, v, f, b, A_log=a_log, dt_bias=dt_bias, scale=SCALE,
                                initial_state=pool, inplace_final_state=True, state_v_first=True,
                                ssm_state_indices=idx[j % sets], out=o, **fused)
    st = time_graph(fused_call, calls, warmup, iters)
    out.append(record("decode", case, "fused", batch, batch, st,
                      "fused_recurrent_kda_fwd, q/k L2 norm + gate + beta sigmoid in kernel, "
                      "state in place in a pool (ssm_state_indices)"))

    def core_call(j):
        fused_recurrent_kda_fwd(qn, kn, v, g, beta, scale=SCALE, initial_state=pool,
                                inplace_final_state=True, state_v_first=True,
                                ssm_state_indices=idx[j % sets], out=o)
    st = time_graph(core_call, calls, warmup, iters)
    out.append(record("decode", case, "core", batch, batch, st,
                      "fused_recurrent_kda_fwd on pre-normalised q/k, precomputed g / beta, "
                      "state in place"))

    def api_call(j):
        fla_kda.fused_recurrent_kda(q, k, v, f, b, A_log=a_log, dt_bias=dt_bias, scale=SCALE,
                                    initial_state=pool[(j % sets) * batch:(j % sets + 1) * batch],
                                    output_final_state=True, state_v_first=True, **fused)
    st = time_graph(api_call, calls, warmup, iters)
    out.append(record("decode", case, "api", batch, batch, st,
                      "public fused_recurrent_kda (fused flags): final state in a new tensor, "
                      "output zero-filled"))
    return out


# ---- cross-check against float64 on kl_kda_bench --dump inputs

def load(dir_, prefix, name, dtype, shape):
    raw = np.fromfile(os.path.join(dir_, f"{prefix}_{name}.bin"), dtype=dtype)
    if dtype == np.uint16:  # bf16 bits
        t = torch.from_numpy(raw.view(np.int16).copy()).view(torch.bfloat16)
    else:
        t = torch.from_numpy(raw.copy())
    return t.reshape(shape).cuda()


def ref_kda(q, k, v, f, b, a_log, dt_bias, h0, cu):
    """Float64 KDA from the raw inputs (spec: L2 norm, softplus gate, sigmoid beta, delta rule)."""
    q, k, v, f, b = (x.double() for x in (q, k, v, f, b))
    qn = q / torch.sqrt((q * q).sum(-1, keepdim=True) + L2_EPS) * SCALE
    kn = k / torch.sqrt((k * k).sum(-1, keepdim=True) + L2_EPS)
    g = -torch.exp(a_log.double()).view(H, 1) * F.softplus(f + dt_bias.double().view(H, K))
    beta = torch.sigmoid(b)
    o = torch.empty_like(v)
    ht = h0.double().clone()
    for s in range(len(cu) - 1):
        S = ht[s]  # [H, V, K]
        for t in range(int(cu[s]), int(cu[s + 1])):
            S = S * torch.exp(g[t]).view(H, 1, K)
            r = torch.einsum("hvk,hk->hv", S, kn[t])
            S = S + (beta[t].view(H, 1) * (v[t] - r)).view(H, V, 1) * kn[t].view(H, 1, K)
            o[t] = torch.einsum("hvk,hk->hv", S, qn[t])
        ht[s] = S
    return o, ht


def rel_l2(x, ref):
    x, ref = x.double().flatten(), ref.double().flatten()
    return float(torch.linalg.vector_norm(x - ref) / torch.linalg.vector_norm(ref))


def cross_check(fla_kda, dir_):
    from fla.ops.kda.fused_recurrent import fused_recurrent_kda_fwd
    rows = []
    for prefix in ("prefill", "decode"):
        cu = np.fromfile(os.path.join(dir_, f"{prefix}_cu.bin"), dtype=np.int32)
        n, seqs = int(cu[-1]), len(cu) - 1
        q, k, v, f = (load(dir_, prefix, x, np.uint16, (n, H, K)) for x in "qkvf")
        b = load(dir_, prefix, "b", np.uint16, (n, H))
        a_log = load(dir_, prefix, "a_log", np.float32, (H,))
        dt_bias = load(dir_, prefix, "dt_bias", np.float32, (H * K,))
        h0 = load(dir_, prefix, "h0", np.float32, (seqs, H, V, K))
        o_ours = load(dir_, prefix, "o", np.uint16, (n, H, V))
        ht_ours = load(dir_, prefix, "ht", np.float32, (seqs, H, V, K))
        fused = dict(use_qk_l2norm_in_kernel=True, use_gate_in_kernel=True,
                     use_beta_sigmoid_in_kernel=True, A_log=a_log, dt_bias=dt_bias)
        if prefix == "prefill":
            cu_cpu = torch.from_numpy(cu.astype(np.int64))
            o_fla, ht_fla = fla_kda.chunk_kda(
                q[None], k[None], v[None], f[None], b[None], scale=SCALE,
                initial_state=h0.clone(), output_final_state=True, state_v_first=True,
                cu_seqlens=cu_cpu.cuda(), cu_seqlens_cpu=cu_cpu, **fused)
        else:  # one token per sequence
            ht_fla = h0.clone()
            o_fla = torch.empty_like(v)[:, None]
            fused_recurrent_kda_fwd(q[:, None], k[:, None], v[:, None], f[:, None], b[:, None],
                                    scale=SCALE, initial_state=ht_fla, inplace_final_state=True,
                                    state_v_first=True, out=o_fla,
                                    ssm_state_indices=torch.arange(seqs, device="cuda",
                                                                   dtype=torch.int32), **fused)
        o_ref, ht_ref = ref_kda(q, k, v, f, b, a_log, dt_bias, h0, cu)
        row = {"impl": "check", "case": prefix, "num_seqs": seqs, "tokens": n,
               "ours_o_rel_l2": rel_l2(o_ours, o_ref), "fla_o_rel_l2": rel_l2(o_fla, o_ref),
               "ours_state_rel_l2": rel_l2(ht_ours, ht_ref),
               "fla_state_rel_l2": rel_l2(ht_fla, ht_ref),
               "ours_vs_fla_o_rel_l2": rel_l2(o_ours, o_fla)}
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


# ---- the side-by-side table

def read_jsonl(path):
    out = []
    if path:
        with open(path) as fh:
            for line in fh:
                if line.startswith("{"):
                    out.append(json.loads(line))
    return out


def fmt_t(ms):
    return f"{ms:8.3f} ms" if ms >= 1 else f"{ms * 1e3:8.2f} us"


def table(ours, ours2, fla, checks):
    def pick(recs, impl, case, variant):
        for r in recs:
            if r.get("impl") == impl and r.get("case") == case and r.get("variant") == variant:
                return r
        return None

    dev = next((r for r in ours if r.get("kind") == "device"), {})
    copy = next((r for r in ours if r.get("kind") == "ceiling"), {})
    ctb = copy.get("copy_tbps", 0.0)
    print(f"\n=== KDA: klserve vs fla 0.5.2 (Triton {triton_version()}, torch {torch.__version__})"
          f" on {dev.get('name', '?')}; D2D copy ceiling {ctb:.2f} TB/s ===")
    if checks:
        print("correctness vs float64 (rel L2 of o / final state), same inputs:")
        for c in checks:
            print(f"  {c['case']:8s} ours o {c['ours_o_rel_l2']:.2e} state "
                  f"{c['ours_state_rel_l2']:.2e} | fla o {c['fla_o_rel_l2']:.2e} state "
                  f"{c['fla_state_rel_l2']:.2e} | ours vs fla o {c['ours_vs_fla_o_rel_l2']:.2e}")
        print("  (ours rounds the L2-normalised q/k to bf16, as fla's chunk path does; fla's "
              "recurrent kernel keeps them in fp32 registers)")

    def drift(case, variant):
        a, b = pick(ours, "klserve", case, variant), pick(ours2, "klserve", case, variant)
        if not a or not b:
            return "    -"
        return f"{100 * (b['median_ms'] / a['median_ms'] - 1):+5.1f}%"

    print("\nP5 prefill (bf16, H=32, K=V=128; median): speedup = fla / ours, target >= 2.00x; "
          "fla timed as a CUDA graph (GPU time), eager Python calls in brackets")
    print(f"{'case':22s} {'ours unit':>11s} {'fla fused':>11s} {'(eager)':>11s} {'speedup':>8s} | "
          f"{'ours core':>11s} {'fla core':>11s} {'(eager)':>11s} {'speedup':>8s} | "
          f"{'ours Mtok/s':>11s} {'rerun':>6s}")
    for case in ("prefill_1x8192", "prefill_varlen_8x1024"):
        ou, oc = pick(ours, "klserve", case, "unit"), pick(ours, "klserve", case, "core")
        fue, fce = pick(fla, "fla", case, "fused"), pick(fla, "fla", case, "core")
        fu = pick(fla, "fla", case, "fused_graph") or fue
        fc = pick(fla, "fla", case, "core_graph") or fce
        if not (ou and oc and fu and fc):
            print(f"{case:22s} (missing records)")
            continue
        print(f"{case:22s} {fmt_t(ou['median_ms'])} {fmt_t(fu['median_ms'])} "
              f"({fmt_t(fue['median_ms'])[1:]}) {fu['median_ms'] / ou['median_ms']:7.2f}x | "
              f"{fmt_t(oc['median_ms'])} {fmt_t(fc['median_ms'])} "
              f"({fmt_t(fce['median_ms'])[1:]}) {fc['median_ms'] / oc['median_ms']:7.2f}x | "
              f"{ou['tokens_per_s'] / 1e6:11.2f} {drift(case, 'unit')}")

    print("\nP4 decode (1 token/seq; state TB/s = fp32 state read + written / time; "
          "target >= 3.8 TB/s at batch >= 64 on H200)")
    print(f"{'case':11s} {'ours core':>11s} {'TB/s':>5s} {'ours unit':>11s} {'TB/s':>5s} | "
          f"{'fla core':>11s} {'TB/s':>5s} {'fla fused':>11s} {'TB/s':>5s} {'fla api':>11s} | "
          f"{'core x':>6s} {'unit x':>6s} {'%copy':>5s} {'rerun':>6s}")
    for batch in (1, 64, 256):
        case = f"decode_b{batch}"
        oc, ou = pick(ours, "klserve", case, "core"), pick(ours, "klserve", case, "unit")
        fc, fu, fa = (pick(fla, "fla", case, x) for x in ("core", "fused", "api"))
        if not (oc and ou and fc and fu and fa):
            print(f"{case:11s} (missing records)")
            continue
        pct = 100 * oc["state_tbps"] / ctb if ctb else 0.0
        print(f"{case:11s} {fmt_t(oc['median_ms'])} {oc['state_tbps']:5.2f} "
              f"{fmt_t(ou['median_ms'])} {ou['state_tbps']:5.2f} | {fmt_t(fc['median_ms'])} "
              f"{fc['state_tbps']:5.2f} {fmt_t(fu['median_ms'])} {fu['state_tbps']:5.2f} "
              f"{fmt_t(fa['median_ms'])} | {fc['median_ms'] / oc['median_ms']:5.2f}x "
              f"{fu['median_ms'] / ou['median_ms']:5.2f}x {pct:5.1f} {drift(case, 'core')}")
    print("speedup / x columns: fla time / ours (> 1 means ours is faster). ours unit = l2norm q, "
          "l2norm k, gate, beta, core (5 launches);\nfla fused = its kernels with the same "
          "fusions in; rerun = our second pass after fla, vs the first.")


def triton_version():
    try:
        import triton
        return triton.__version__
    except ImportError:
        return "?"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ours", required=True, help="kl_kda_bench's output (JSON lines)")
    ap.add_argument("--ours2", help="a second kl_kda_bench pass, for the drift column")
    ap.add_argument("--dump", help="directory written by kl_kda_bench --dump")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--iters", type=int, default=30)
    ap.add_argument("--only", choices=["prefill", "decode"])
    ap.add_argument("--json-out", help="also write fla's records here")
    ap.add_argument("--fla", help="print the table from fla records saved by --json-out (no runs)")
    ap.add_argument("--no-table", action="store_true", help="run fla, print no table")
    args = ap.parse_args()
    if args.fla:
        saved = read_jsonl(args.fla)
        table(read_jsonl(args.ours), read_jsonl(args.ours2),
              [r for r in saved if r.get("impl") == "fla"],
              [r for r in saved if r.get("impl") == "check"])
        return

    os.environ.setdefault("FLA_DISABLE_BACKEND_DISPATCH", "1")  # Triton kernels, not FlashKDA
    import fla
    import fla.ops.kda as fla_kda
    log(f"fla {fla.__version__} from {os.path.dirname(fla.__file__)}; device "
        f"{torch.cuda.get_device_name(0)}")
    gen = torch.Generator(device="cuda")
    gen.manual_seed(1234)
    fla_recs, checks = [], []
    with torch.inference_mode():
        if args.dump:
            checks = cross_check(fla_kda, args.dump)
        if args.only in (None, "prefill"):
            fla_recs += bench_prefill(fla_kda, "prefill_1x8192", [8192], args.warmup, args.iters,
                                      gen)
            fla_recs += bench_prefill(fla_kda, "prefill_varlen_8x1024", [1024] * 8, args.warmup,
                                      args.iters, gen)
        if args.only in (None, "decode"):
            for batch in (1, 64, 256):
                fla_recs += bench_decode(fla_kda, batch, args.warmup, args.iters, gen)
    if args.json_out:
        with open(args.json_out, "w") as fh:
            for r in fla_recs + checks:
                fh.write(json.dumps(r) + "\n")
    if not args.no_table:
        table(read_jsonl(args.ours), read_jsonl(args.ours2), fla_recs, checks)


if __name__ == "__main__":
    main()
