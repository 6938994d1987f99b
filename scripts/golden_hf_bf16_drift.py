# HF's own bf16 drift on golden cases: the yardstick the bf16 rule of ../shared/golden/README.md
# was calibrated with (on tiny-a). Loads each case's hub checkpoint in bfloat16 with HF
# transformers' native kimi_linear (its torch path) and prints, per prompt, the relative L2 error of
# the prefill logits against the case's fp32 reference, of the decode logits up to and including the
# first greedy divergence (as tests/gpu/golden_gpu_test.cpp measures ours), and the greedy steps
# equal to the reference; then the geometric means. On a GPU machine:
#   python3 scripts/golden_hf_bf16_drift.py CASE_DIR [CASE_DIR...]
import json
import math
import sys

import torch
from safetensors.torch import load_file
from transformers import KimiLinearForCausalLM

torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
DEV = "cuda"


def rel_l2(a, ref):
    return ((a.double() - ref.double()).norm() / ref.double().norm()).item()


@torch.no_grad()
def drift(case_dir):
    meta = json.load(open(f"{case_dir}/golden.json"))
    cfg = json.load(open(f"{case_dir}/model/config.json"))
    ref = load_file(f"{case_dir}/logits.safetensors")
    model = KimiLinearForCausalLM.from_pretrained(f"{case_dir}/model", dtype=torch.bfloat16,
                                                  device_map=DEV).eval()
    logs_p, logs_d = [], []
    for p in meta["prompts"]:
        name, greedy = p["name"], p["greedy_ids"]
        ids = torch.tensor([p["input_ids"]], device=DEV)
        line = f"hf-bf16 {meta['case']} {name} ({ids.shape[1]} tokens):"
        if f"{name}.prefill_logits" in ref:
            e = rel_l2(model(ids).logits[0].float().cpu(), ref[f"{name}.prefill_logits"])
            logs_p.append(math.log(max(e, 1e-12)))
            line += f" prefill {e:.2e}"
        out = model.generate(ids, max_new_tokens=len(greedy), do_sample=False, use_cache=True,
                             output_logits=True, return_dict_in_generate=True, eos_token_id=None,
                             pad_token_id=cfg["pad_token_id"])
        gen = out.sequences[0, ids.shape[1]:].tolist()
        d = 0
        while d < len(greedy) and gen[d] == greedy[d]:
            d += 1
        rows = min(d + 1, len(greedy))
        ours = torch.stack([x[0].float() for x in out.logits])[:rows].cpu()
        e = rel_l2(ours, ref[f"{name}.decode_logits"][:rows])
        logs_d.append(math.log(max(e, 1e-12)))
        line += f" decode {e:.2e} (greedy equal {d}/{len(greedy)}"
        if d < len(greedy):
            line += f", reference margin there {p['greedy_top2_margin'][d]:.3f}"
        print(line + ")", flush=True)
    summary = f"hf-bf16 {meta['case']}: decode geometric mean {math.exp(sum(logs_d) / len(logs_d)):.2e}"
    if logs_p:
        summary += f", prefill geometric mean {math.exp(sum(logs_p) / len(logs_p)):.2e}"
    print(summary, flush=True)
    del model
    torch.cuda.empty_cache()


if __name__ == "__main__":
    for case_dir in sys.argv[1:]:
        drift(case_dir)
