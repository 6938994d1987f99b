# The real-width golden case ("real-width"): Kimi-Linear-48B-A3B's own per-layer dimensions and
# vocabulary, cut to 4 layers (0-based: KDA + dense FFN, KDA + MoE, MLA + MoE, KDA + MoE), made
# with make_golden.py (HF transformers' native kimi_linear, fp32, TF32 off) on a GPU machine:
#   python3 scripts/golden_real.py PATH/TO/make_golden.py OUTDIR
# The checkpoint is ~12.6 GB of bf16 (6.3e9 parameters, 5.4e9 of them in the 3 x 256 experts), far
# too large for the repository: scripts/gpu-golden-real.sh makes it and tests it in one device run.
#
# Differences from the small variants (scripts/golden_variants.py), and why:
# - min_router_margin 1e-5 instead of 1e-4. With 256 experts the gap between the 8th and 9th
#   router score is roughly exponential with a mean of ~5e-3 (an estimate; the run prints the
#   tries and margins), so a gap below 1e-4 occurs in ~2% of the routings; a 130-token prompt
#   routes ~420 token-layers (prefill + decode, 3 MoE layers) and would almost never pass. Below
#   1e-5 it is ~0.2% per routing (~40% of such prompts pass). fp32 noise on a router score is
#   ~1e-7 (score' ~0.05 near the top-8 times a ~1e-6 relative logit error), so a faithful fp32
#   path still cannot flip an expert.
# - Not compact: the prefill logits (~130 MB) and activations are kept, so the fp32 rule is checked
#   on the prefill logits too; the case lives only in a temp dir of the GPU machine.
# - Two speed-ups that leave the function unchanged: the random model is built directly on the GPU
#   (CPU init of 6.3e9 parameters takes minutes; the seed still fixes it) and the hub export is
#   reloaded straight onto the GPU (device_map); make_golden's round-trip check (max |diff| == 0)
#   still compares the export against the built model. The transfer tarball make_golden writes
#   next to each case is skipped (another 12.6 GB copy; the case is tested where it was made).
import importlib.util
import sys
import time

import torch

spec = importlib.util.spec_from_file_location("make_golden", sys.argv[1])
mg = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mg)

REAL_WIDTH = dict(
    seed=2304,
    cfg=dict(vocab_size=163840, hidden_size=2304, num_hidden_layers=4,
             num_attention_heads=32, num_key_value_heads=32, intermediate_size=9216,
             moe_intermediate_size=1024, num_experts=256, num_experts_per_token=8,
             num_shared_experts=1, first_k_dense_replace=1, routed_scaling_factor=2.446,
             num_expert_group=1, topk_group=1, kv_lora_rank=512, qk_nope_head_dim=128,
             qk_rope_head_dim=64, v_head_dim=128, rms_norm_eps=1e-5,
             bos_token_id=163584, eos_token_id=163586, pad_token_id=163839,
             linear_attn_config=dict(num_heads=32, head_dim=128, short_conv_kernel_size=4,
                                     kda_layers=[1, 2, 4], full_attn_layers=[3])),
    prompt_lens=[1, 5, 65, 130], gen=12, hidden_prompt=2, min_margin=0.02,
    min_router_margin=1e-5)

CASES = {"real-width": REAL_WIDTH}


class _BuiltOnGpu:
    """Stands in for make_golden's KimiLinearForCausalLM: builds the random model on the GPU and
    reloads the hub export straight onto it."""
    _cls = mg.KimiLinearForCausalLM

    def __new__(cls, config):
        with torch.device(mg.DEV):
            return cls._cls(config)

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        return cls._cls.from_pretrained(*args, device_map=mg.DEV, **kwargs)


class _NoTar:
    """make_golden packs each case into OUTDIR/<case>.tar for transfer; not needed here."""

    @staticmethod
    def open(*args, **kwargs):
        return _NoTar()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def add(self, *args, **kwargs):
        pass


mg.KimiLinearForCausalLM = _BuiltOnGpu
mg.tarfile = _NoTar

if __name__ == "__main__":
    outdir = sys.argv[2]
    for name in sys.argv[3:] or list(CASES):
        t0 = time.time()
        mg.run_case(name, CASES[name], outdir)
        print(f"{name}: generated in {time.time() - t0:.0f} s", flush=True)
