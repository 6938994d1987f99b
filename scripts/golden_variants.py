# Variant golden cases for klserve's own test data, generated with ../shared/golden/make_golden.py
# (HF transformers' native kimi_linear, fp32, TF32 off) on a GPU machine:
#   python3 scripts/golden_variants.py PATH/TO/make_golden.py OUTDIR [CASE...]
# The cases are compact (model, golden.json, decode logits) and small enough to commit under
# tests/data/golden/. The real-width case (too large to commit) is scripts/golden_real.py, made
# and tested on the GPU machine by scripts/gpu-golden-real.sh.
import importlib.util
import sys

spec = importlib.util.spec_from_file_location("make_golden", sys.argv[1])
mg = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mg)

VARIANTS = {
    # Grouped top-k over 4 groups (keep 2), 2 shared experts, 2 dense layers, other MLA dims and
    # another rms_norm_eps.
    "tiny-grouped": dict(
        seed=2024,
        cfg=dict(vocab_size=512, hidden_size=128, num_hidden_layers=5,
                 num_attention_heads=2, num_key_value_heads=2, intermediate_size=256,
                 moe_intermediate_size=32, num_experts=16, num_experts_per_token=4,
                 num_shared_experts=2, first_k_dense_replace=2, routed_scaling_factor=1.7,
                 num_expert_group=4, topk_group=2, kv_lora_rank=256, qk_nope_head_dim=64,
                 qk_rope_head_dim=32, v_head_dim=64, rms_norm_eps=1e-6,
                 bos_token_id=508, eos_token_id=509, pad_token_id=511,
                 linear_attn_config=dict(num_heads=2, head_dim=128, short_conv_kernel_size=4,
                                         kda_layers=[1, 3, 4], full_attn_layers=[2, 5])),
        prompt_lens=[1, 6, 63, 64, 65, 129], gen=12, hidden_prompt=4, min_margin=0.02,
        compact=True),
    # Three KDA and MLA heads, the last layer KDA, MLA first-but-one, eps 2e-5.
    "tiny-kda-last": dict(
        seed=4321,
        cfg=dict(vocab_size=384, hidden_size=192, num_hidden_layers=4,
                 num_attention_heads=3, num_key_value_heads=3, intermediate_size=384,
                 moe_intermediate_size=48, num_experts=8, num_experts_per_token=2,
                 num_shared_experts=1, first_k_dense_replace=1, routed_scaling_factor=2.446,
                 num_expert_group=1, topk_group=1, kv_lora_rank=512, qk_nope_head_dim=128,
                 qk_rope_head_dim=64, v_head_dim=128, rms_norm_eps=2e-5,
                 bos_token_id=380, eos_token_id=381, pad_token_id=383,
                 linear_attn_config=dict(num_heads=3, head_dim=128, short_conv_kernel_size=4,
                                         kda_layers=[1, 3, 4], full_attn_layers=[2])),
        prompt_lens=[1, 9, 64, 65, 140], gen=12, hidden_prompt=3, min_margin=0.02,
        compact=True),
}

if __name__ == "__main__":
    outdir = sys.argv[2]
    for name in sys.argv[3:] or list(VARIANTS):
        mg.run_case(name, VARIANTS[name], outdir)
