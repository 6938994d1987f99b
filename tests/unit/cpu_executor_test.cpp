// The CPU executor's mechanisms on dummy weights: ordered asynchronous results, tokens named from
// the previous step, state-block copy and reset, bad plans failing one step without harming the
// next, and the cache sizes of the real model.
#include <catch2/catch.hpp>

#include <cstring>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "engine/checkpoint/weight_store.h"
#include "engine/exec/cpu_executor.h"
#include "engine/exec/kv_layout.h"

using namespace kl;

namespace {

// A small config with every layer kind: KDA + dense, MLA + MoE, KDA + MoE.
nlohmann::json small_config_json() {
  return {
      {"model_type", "kimi_linear"},
      {"vocab_size", 96},
      {"hidden_size", 64},
      {"num_hidden_layers", 3},
      {"num_attention_heads", 2},
      {"num_key_value_heads", 2},
      {"intermediate_size", 96},
      {"moe_intermediate_size", 32},
      {"num_experts", 4},
      {"num_experts_per_token", 2},
      {"num_shared_experts", 1},
      {"first_k_dense_replace", 1},
      {"routed_scaling_factor", 2.446},
      {"num_expert_group", 1},
      {"topk_group", 1},
      {"kv_lora_rank", 32},
      {"qk_nope_head_dim", 16},
      {"qk_rope_head_dim", 8},
      {"v_head_dim", 16},
      {"rms_norm_eps", 1e-5},
      {"hidden_act", "silu"},
      {"moe_router_activation_func", "sigmoid"},
      {"moe_renormalize", true},
      {"use_grouped_topk", true},
      {"q_lora_rank", nullptr},
      {"mla_use_nope", true},
      {"rope_scaling", nullptr},
      {"tie_word_embeddings", false},
      {"model_max_length", 4096},
      {"bos_token_id", 1},
      {"eos_token_id", 2},
      {"pad_token_id", 0},
      {"linear_attn_config",
       {{"num_heads", 2},
        {"head_dim", 16},
        {"short_conv_kernel_size", 4},
        {"kda_layers", {1, 3}},
        {"full_attn_layers", {2}}}},
  };
}

struct Fixture {
  ModelConfig config = parse_model_config(small_config_json(), "<test config>");
  WeightStore store = WeightStore::dummy(config, 42);
  ModelWeights weights = bind_model_weights(config, store);

  std::unique_ptr<CpuExecutor> executor(int64_t pages = 16, int64_t blocks = 4) const {
    return std::make_unique<CpuExecutor>(config, weights, pages, blocks);
  }
};

SeqStep step(int64_t seq, std::vector<int32_t> tokens, int64_t computed, std::vector<int32_t> pages,
             int32_t block, bool reset, LogitsMode mode) {
  SeqStep s;
  s.seq_id = seq;
  s.token_ids = std::move(tokens);
  s.num_computed_tokens = computed;
  s.page_table = std::move(pages);
  s.state_block = block;
  s.reset_state = reset;
  s.logits = mode;
  return s;
}

StepPlan plan_of(uint64_t id, std::vector<SeqStep> seqs, std::vector<StateBlockOp> ops = {}) {
  StepPlan p;
  p.step_id = id;
  p.seqs = std::move(seqs);
  p.block_ops = std::move(ops);
  p.return_logits = true;
  return p;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * 4) == 0;
}

std::vector<int32_t> prompt(int n, int offset = 3) {
  std::vector<int32_t> p(n);
  for (int i = 0; i < n; ++i) p[i] = (offset + 7 * i) % 90 + 3;
  return p;
}

}  // namespace

TEST_CASE("cpu executor: results come back in submit order with the previous token resolved") {
  Fixture f;
  auto a = f.executor();
  auto b = f.executor();
  const auto p = prompt(10);
  // a: explicit token ids after collecting each step. b: three steps submitted before any
  // collect, decodes naming kPrevSampledToken.
  StepResult r0 = a->run_now(plan_of(0, {step(5, p, 0, {3}, 1, true, LogitsMode::kLast)}));
  REQUIRE(r0.ok);
  StepResult r1 = a->run_now(
      plan_of(1, {step(5, {r0.outputs[0].sampled_token}, 10, {3}, 1, false, LogitsMode::kLast)}));
  StepResult r2 = a->run_now(
      plan_of(2, {step(5, {r1.outputs[0].sampled_token}, 11, {3}, 1, false, LogitsMode::kLast)}));

  b->submit(plan_of(10, {step(5, p, 0, {3}, 1, true, LogitsMode::kLast)}));
  b->submit(plan_of(11, {step(5, {kPrevSampledToken}, 10, {3}, 1, false, LogitsMode::kLast)}));
  b->submit(plan_of(12, {step(5, {kPrevSampledToken}, 11, {3}, 1, false, LogitsMode::kLast)}));
  StepResult s0 = b->collect(), s1 = b->collect(), s2 = b->collect();
  CHECK(s0.step_id == 10);
  CHECK(s1.step_id == 11);
  CHECK(s2.step_id == 12);
  REQUIRE((s0.ok && s1.ok && s2.ok));
  CHECK(same_bits(s1.outputs[0].logits, r1.outputs[0].logits));
  CHECK(same_bits(s2.outputs[0].logits, r2.outputs[0].logits));
  CHECK(s2.outputs[0].sampled_token == r2.outputs[0].sampled_token);
}

TEST_CASE("cpu executor: a copied state block continues exactly like the original (fork)") {
  Fixture f;
  auto e = f.executor();
  const auto p = prompt(kPageSize);  // a full page, so the forks' next tokens go to new pages
  StepResult r = e->run_now(plan_of(0, {step(1, p, 0, {0}, 0, true, LogitsMode::kLast)}));
  REQUIRE(r.ok);
  const int32_t tok = r.outputs[0].sampled_token;
  // Fork block 0 into block 2; both continue with the same token on their own second page.
  StepResult d =
      e->run_now(plan_of(1,
                         {step(1, {tok}, kPageSize, {0, 1}, 0, false, LogitsMode::kLast),
                          step(2, {tok}, kPageSize, {0, 5}, 2, false, LogitsMode::kLast)},
                         {{StateBlockOp::Kind::kCopy, 0, 2}}));
  REQUIRE(d.ok);
  REQUIRE(d.outputs.size() == 2);
  CHECK(same_bits(d.outputs[0].logits, d.outputs[1].logits));
  // Without the copy, block 3 holds zeros: the continuation differs.
  StepResult z =
      e->run_now(plan_of(2, {step(3, {tok}, kPageSize, {0, 6}, 3, true, LogitsMode::kLast)}));
  REQUIRE(z.ok);
  CHECK_FALSE(same_bits(z.outputs[0].logits, d.outputs[0].logits));
}

TEST_CASE("cpu executor: reset_state gives a reused block a fresh start") {
  Fixture f;
  auto fresh = f.executor();
  const auto q = prompt(20, 11);
  StepResult want = fresh->run_now(plan_of(0, {step(1, q, 0, {0}, 0, true, LogitsMode::kAll)}));
  auto reused = f.executor();
  REQUIRE(
      reused->run_now(plan_of(0, {step(9, prompt(30), 0, {2}, 0, true, LogitsMode::kNone)})).ok);
  StepResult got = reused->run_now(plan_of(1, {step(1, q, 0, {4}, 0, true, LogitsMode::kAll)}));
  REQUIRE((want.ok && got.ok));
  CHECK(same_bits(want.outputs[0].logits, got.outputs[0].logits));
  CHECK(got.outputs[0].logits.size() == 20 * 96);
}

TEST_CASE("cpu executor: a bad plan fails its step with a clear error; the next step runs") {
  Fixture f;
  auto e = f.executor(4, 2);
  const auto p = prompt(8);
  auto fails_with = [&](StepPlan plan, const std::string& needle) {
    e->submit(std::move(plan));
    StepResult r = e->collect();
    CHECK_FALSE(r.ok);
    CHECK_THAT(r.error, Catch::Contains(needle));
    CHECK(r.outputs.empty());
  };
  fails_with(plan_of(0, {step(1, {500}, 0, {0}, 0, true, LogitsMode::kLast)}), "vocabulary");
  fails_with(plan_of(1, {step(1, p, 0, {}, 0, true, LogitsMode::kLast)}), "has no page");
  fails_with(plan_of(2, {step(1, p, 0, {9}, 0, true, LogitsMode::kLast)}), "page 9 out of range");
  fails_with(plan_of(3, {step(1, p, 0, {0}, 7, true, LogitsMode::kLast)}), "state block 7");
  fails_with(plan_of(4, {step(3, {kPrevSampledToken}, 0, {0}, 0, true, LogitsMode::kLast)}),
             "none was sampled");
  e->submit(plan_of(5, {step(1, p, 0, {0}, 0, true, LogitsMode::kLast)}));
  StepResult ok = e->collect();
  CHECK(ok.ok);
  CHECK(ok.outputs.size() == 1);
}

TEST_CASE("cache spec of the real model matches the spec's byte counts") {
  const auto path =
      std::filesystem::path(KL_SOURCE_DIR) / "tests/data/kimi_linear_48b_a3b_config.json";
  const ModelConfig c = load_model_config(path.string());
  const CacheSpec s = cache_spec(c);
  // spec 5: 7 layers x 576 values x 2 B = 8,064 B per token in bf16.
  CHECK(s.page_bytes(2) == 8064 * kPageSize);
  // spec 4.4: 20 layers x (2,097,152 B fp32 state + 3 x 24,576 B bf16 conv) = 43,417,600 B.
  CHECK(s.state_block_bytes(2) == 43417600);
  const CacheBudget b = split_cache_budget(s, int64_t{40} << 30, 2, 256);
  CHECK(b.num_state_blocks == 256);
  CHECK(b.num_pages == ((int64_t{40} << 30) - 256 * 43417600LL) / (8064 * kPageSize));
  CHECK_THROWS_WITH(split_cache_budget(s, 1000, 2, 8), Catch::Contains("cache budget"));
}
