# HF's own kimi_linear (transformers' torch path) on one golden prompt followed by its reference
# greedy tokens (teacher forcing), in float32 and bfloat16, for comparing a bf16 implementation
# with HF's bf16 layer by layer (the counterpart of tests/gpu/golden_bf16_probe_gpu_test.cpp).
# Two schedules: "prefill" (every position in one forward, no cache) and "decode" (the prompt
# prefilled with a cache, then one teacher-forced token per forward). Writes raw fp32 arrays
# hf.<dtype>.<schedule>.<name>.bin ([positions, cols]) and index_hf.txt into OUTDIR:
#   logits, out{j} (layer j's output), mix{j} (its mixer's output), rin{j} (the MoE router's input,
#   i.e. post_attention_layernorm's output), and prints per-step logits errors. On a GPU machine:
#   python3 scripts/golden_hf_probe.py CASE_DIR OUTDIR [PROMPT]
import json
import os
import sys

import torch
from safetensors.torch import load_file
from transformers import KimiLinearForCausalLM

torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
DEV = "cuda"


def rel_l2(a, ref):
    return ((a.double() - ref.double()).norm() / ref.double().norm()).item()


class Recorder:
    def __init__(self, model):
        self.rows = {}
        self.hooks = []
        for j, layer in enumerate(model.model.layers):
            self.hooks.append(layer.self_attn.register_forward_hook(
                lambda m, i, o, j=j: self.add(f"mix{j}", o[0] if isinstance(o, tuple) else o)))
            self.hooks.append(layer.register_forward_hook(
                lambda m, i, o, j=j: self.add(f"out{j}", o[0] if isinstance(o, tuple) else o)))
            gate = getattr(layer.mlp, "gate", None)
            if gate is not None and hasattr(gate, "e_score_correction_bias"):
                self.hooks.append(gate.register_forward_hook(
                    lambda m, i, o, j=j: self.add(f"rin{j}", i[0])))

    def add(self, name, t):
        t = t.detach().float().reshape(-1, t.shape[-1]).cpu()
        self.rows.setdefault(name, []).append(t)

    def take(self):
        out = {k: torch.cat(v) for k, v in self.rows.items()}
        self.rows = {}
        return out


@torch.no_grad()
def main(case_dir, out_dir, pname):
    os.makedirs(out_dir, exist_ok=True)
    meta = json.load(open(f"{case_dir}/golden.json"))
    ref = load_file(f"{case_dir}/logits.safetensors")
    p = [q for q in meta["prompts"] if q["name"] == pname][0]
    L, greedy = len(p["input_ids"]), p["greedy_ids"]
    tokens = torch.tensor([p["input_ids"] + greedy[:-1]], device=DEV)
    ref_dec = ref[f"{pname}.decode_logits"]
    index, kept, gates = [], {}, {}
    for dtype, dname in ((torch.float32, "f32"), (torch.bfloat16, "bf16")):
        model = KimiLinearForCausalLM.from_pretrained(f"{case_dir}/model", dtype=dtype,
                                                      device_map=DEV).eval()
        rec = Recorder(model)
        runs = {}
        logits = model(tokens).logits[0].float().cpu()
        runs["prefill"] = dict(rec.take(), logits=logits)
        try:
            out = model(tokens[:, :L], use_cache=True)
            pkv, rows = out.past_key_values, [out.logits[0].float().cpu()]
            for t in range(L, tokens.shape[1]):
                out = model(tokens[:, t:t + 1], past_key_values=pkv, use_cache=True)
                pkv = out.past_key_values
                rows.append(out.logits[0].float().cpu())
            runs["decode"] = dict(rec.take(), logits=torch.cat(rows))
        except Exception as e:  # the cached path's API may differ between versions
            print(f"hf {dname} decode schedule failed: {e!r}", flush=True)
            rec.take()
        for j, layer in enumerate(model.model.layers):
            gate = getattr(layer.mlp, "gate", None)
            if dname == "f32" and gate is not None and hasattr(gate, "e_score_correction_bias"):
                gates[j] = (gate.weight.double().cpu(), gate.e_score_correction_bias.double().cpu(),
                            gate.top_k, gate.num_group)
        for sched, arrays in runs.items():
            kept[(dname, sched)] = arrays
            for name, a in arrays.items():
                fname = f"hf.{dname}.{sched}.{name}"
                a.contiguous().numpy().astype("float32").tofile(f"{out_dir}/{fname}.bin")
                index.append(f"{fname} {a.shape[0]} {a.shape[1]}")
            lg = arrays["logits"]
            print(f"hf {dname} {sched}: step ref-id margin rel-err argmax", flush=True)
            for k in range(len(greedy)):
                row = lg[L - 1 + k]
                print(f"  {k:2d} {greedy[k]:4d} {p['greedy_top2_margin'][k]:.3f} "
                      f"{rel_l2(row, ref_dec[k]):.2e} {int(row.argmax())}", flush=True)
        for h in rec.hooks:
            h.remove()
        del model
        torch.cuda.empty_cache()
    # Routing: every choice of the bf16 run that differs from the fp32 one, with the fp32 gap
    # between the last chosen and the first rejected expert and the bf16 change of that gap.
    for sched in ("prefill", "decode"):
        if ("bf16", sched) not in kept or ("f32", sched) not in kept:
            continue
        for j, (w, b, k, groups) in gates.items():
            if groups != 1:
                continue
            sel = {d: torch.sigmoid(kept[(d, sched)][f"rin{j}"].double() @ w.t()) + b
                   for d in ("f32", "bf16")}
            order = sel["f32"].argsort(dim=-1, descending=True)
            pick = lambda d, i: sel[d].gather(1, order[:, i:i + 1])[:, 0]
            gap = pick("f32", k - 1) - pick("f32", k)
            change = pick("bf16", k - 1) - pick("bf16", k) - gap
            ours = sel["bf16"].argsort(dim=-1, descending=True)[:, :k].sort(dim=-1)[0]
            ref = order[:, :k].sort(dim=-1)[0]
            flips = [f" pos {t} (gap {gap[t]:.1e}, change {change[t]:+.1e});"
                     for t in range(ref.shape[0]) if not torch.equal(ref[t], ours[t])]
            print(f"hf {pname} routing [{sched}] layer {j}: rms gap change "
                  f"{change.pow(2).mean().sqrt():.1e}, {int((gap < 1e-2).sum())} positions with "
                  f"gap < 1e-2, flips:{''.join(flips) or ' none'}", flush=True)
    with open(f"{out_dir}/index_hf.txt", "w") as f:
        f.write("\n".join(index) + "\n")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else "p4")
