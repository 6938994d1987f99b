// Config parsing: the released config and tiny-a into their layer plans, the optional fields, and
// every validation error naming both the field and the file.
#include <catch2/catch.hpp>
#include <filesystem>
#include <functional>

#include "engine/core/error.h"
#include "models/model_config.h"
#include "tests/support/test_support.h"
#include "tests/unit/checkpoint_fixtures.h"

using Catch::Matchers::Contains;
using nlohmann::json;

namespace {

std::vector<int> layers_where(const kl::ModelConfig& c, kl::MixerKind m) {
  std::vector<int> out;
  for (const kl::LayerSpec& s : c.plan.layers)
    if (s.mixer == m) out.push_back(s.index);
  return out;
}

// The message of parsing `j` (source "/cfg/fixture.json"), or "<no error>".
std::string parse_error(const json& j) {
  try {
    kl::parse_model_config(j, "/cfg/fixture.json");
  } catch (const kl::Error& e) {
    return e.what();
  }
  return "<no error>";
}

}  // namespace

TEST_CASE("config: the released Kimi-Linear-48B-A3B config", "[config]") {
  const kl::ModelConfig c = kl::load_model_config(kl::test::real_config_path());
  CHECK(c.source == kl::test::real_config_path());
  CHECK(c.vocab_size == 163840);
  CHECK(c.hidden_size == 2304);
  CHECK(c.num_hidden_layers == 27);
  CHECK(c.intermediate_size == 9216);
  CHECK(c.rms_norm_eps == 1e-5f);
  CHECK_FALSE(c.tie_word_embeddings);
  CHECK(c.max_position_embeddings == 1048576);
  CHECK(c.bos_token_id == 163584);
  CHECK(c.eos_token_ids == std::vector<int64_t>{163586});
  CHECK(c.pad_token_id == 163839);
  CHECK(c.num_attention_heads == 32);
  CHECK(c.kv_lora_rank == 512);
  CHECK(c.mla_q_head_dim() == 192);
  CHECK(c.mla_cache_dim() == 576);
  CHECK(c.v_head_dim == 128);
  CHECK(c.kda_num_heads == 32);
  CHECK(c.kda_head_dim == 128);
  CHECK(c.kda_dim() == 4096);
  CHECK(c.short_conv_kernel_size == 4);
  CHECK_FALSE(c.has_gate_lower_bound);
  CHECK(c.num_experts == 256);
  CHECK(c.num_experts_per_token == 8);
  CHECK(c.num_shared_experts == 1);
  CHECK(c.shared_intermediate_size() == 1024);
  CHECK(c.first_k_dense_replace == 1);
  CHECK(c.num_expert_group == 1);
  CHECK(c.topk_group == 1);
  CHECK(c.routed_scaling_factor == Approx(2.446f));
  CHECK(c.moe_renormalize);

  // Spec 1.1: MLA at 0-based 3, 7, 11, 15, 19, 23, 26; 20 KDA + 7 MLA; layer 0 dense.
  CHECK(layers_where(c, kl::MixerKind::kMla) == std::vector<int>{3, 7, 11, 15, 19, 23, 26});
  CHECK(c.plan.num_kda_layers == 20);
  CHECK(c.plan.num_mla_layers == 7);
  REQUIRE(c.plan.layers.size() == 27);
  CHECK(c.plan.layers[0].ffn == kl::FfnKind::kDense);
  for (int i = 1; i < 27; ++i) CHECK(c.plan.layers[i].ffn == kl::FfnKind::kMoe);
  CHECK(c.plan.layers[0].kda_index == 0);
  CHECK(c.plan.layers[3].mla_index == 0);
  CHECK(c.plan.layers[3].kda_index == -1);
  CHECK(c.plan.layers[4].kda_index == 3);
  CHECK(c.plan.layers[26].mla_index == 6);
  CHECK(c.plan.layers[25].kda_index == 19);

  const std::string d = kl::describe_layer_plan(c);
  CHECK_THAT(d, Contains("27 layers: 20 KDA + 7 MLA (MLA at 3,7,11,15,19,23,26)"));
  CHECK_THAT(d, Contains("1 dense (at 0) + 26 MoE"));
  CHECK(d.find('\n') == std::string::npos);
}

TEST_CASE("config: tiny-a from the golden data", "[config]") {
  auto golden = kl::test::golden_dir();
  if (!golden) {
    WARN("golden data not found (KL_GOLDEN_DIR or ../shared/golden): tiny-a config not checked");
    return;
  }
  const kl::ModelConfig c = kl::load_model_config(*golden + "/tiny-a/model/config.json");
  CHECK(c.hidden_size == 256);
  CHECK(c.num_hidden_layers == 6);
  CHECK(layers_where(c, kl::MixerKind::kMla) == std::vector<int>{3, 5});
  CHECK(layers_where(c, kl::MixerKind::kKda) == std::vector<int>{0, 1, 2, 4});
  CHECK(c.plan.layers[0].ffn == kl::FfnKind::kDense);
  CHECK(c.plan.layers[5].ffn == kl::FfnKind::kMoe);
  CHECK(c.kda_num_heads == 2);
  CHECK(c.num_experts == 8);
  CHECK(c.num_experts_per_token == 2);
  CHECK(c.eos_token_ids == std::vector<int64_t>{1021});
  CHECK(c.max_position_embeddings == 8192);
}

TEST_CASE("config: optional fields and their alternatives", "[config]") {
  json j = kl::test::small_config_json();
  SECTION("eos list, grouped routing, several shared experts") {
    const kl::ModelConfig c = kl::parse_model_config(j, "small.json");
    CHECK(c.eos_token_ids == std::vector<int64_t>{91, 92});
    CHECK(c.num_expert_group == 2);
    CHECK(c.shared_intermediate_size() == 32);
    CHECK(layers_where(c, kl::MixerKind::kMla) == std::vector<int>{2});
  }
  SECTION("gate_lower_bound at the top level or in linear_attn_config") {
    j["gate_lower_bound"] = -5.0;
    kl::ModelConfig c = kl::parse_model_config(j, "small.json");
    CHECK(c.has_gate_lower_bound);
    CHECK(c.gate_lower_bound == -5.f);
    j.erase("gate_lower_bound");
    j["linear_attn_config"]["gate_lower_bound"] = -3;
    c = kl::parse_model_config(j, "small.json");
    CHECK(c.gate_lower_bound == -3.f);
    CHECK_THAT(kl::describe_layer_plan(c), Contains("lower bound"));
  }
  SECTION("max_position_embeddings when model_max_length is absent") {
    j.erase("model_max_length");
    j["max_position_embeddings"] = 777;
    CHECK(kl::parse_model_config(j, "small.json").max_position_embeddings == 777);
  }
  SECTION("use_grouped_topk false means one group") {
    j["use_grouped_topk"] = false;
    const kl::ModelConfig c = kl::parse_model_config(j, "small.json");
    CHECK(c.num_expert_group == 1);
    CHECK(c.topk_group == 1);
  }
  SECTION("top-level head_dim is ignored, whatever it holds") {
    j["head_dim"] = "nonsense";
    CHECK_NOTHROW(kl::parse_model_config(j, "small.json"));
  }
  SECTION("moe_layer_freq 2 makes every other layer dense") {
    j["moe_layer_freq"] = 2;
    const kl::ModelConfig c = kl::parse_model_config(j, "small.json");
    CHECK(c.plan.layers[1].ffn == kl::FfnKind::kDense);
    CHECK(c.plan.layers[2].ffn == kl::FfnKind::kMoe);
    CHECK(c.plan.layers[3].ffn == kl::FfnKind::kDense);
  }
  SECTION("no dense layer: intermediate_size may be absent") {
    j["first_k_dense_replace"] = 0;
    j.erase("intermediate_size");
    CHECK(kl::parse_model_config(j, "small.json").intermediate_size == 0);
  }
}

TEST_CASE("config: every error names the field and the file", "[config]") {
  struct Case {
    const char* what;
    std::function<void(json&)> mutate;
    std::vector<std::string> expect;  // substrings of the message besides the file name
  };
  const std::vector<Case> cases = {
      {"missing field", [](json& j) { j.erase("hidden_size"); }, {"'hidden_size'", "missing"}},
      {"missing nested field",
       [](json& j) { j["linear_attn_config"].erase("kda_layers"); },
       {"'linear_attn_config.kda_layers'", "missing"}},
      {"missing linear_attn_config",
       [](json& j) { j.erase("linear_attn_config"); },
       {"'linear_attn_config'", "missing"}},
      {"string for an integer",
       [](json& j) { j["hidden_size"] = "2304"; },
       {"'hidden_size'", "expected an integer"}},
      {"float for an integer",
       [](json& j) { j["num_experts"] = 256.5; },
       {"'num_experts'", "expected an integer"}},
      {"string for a float",
       [](json& j) { j["rms_norm_eps"] = "1e-5"; },
       {"'rms_norm_eps'", "expected a number"}},
      {"list of non-integers",
       [](json& j) {
         j["linear_attn_config"]["kda_layers"] = {1, "2"};
       },
       {"'linear_attn_config.kda_layers'", "expected an integer"}},
      {"non-list layers",
       [](json& j) { j["linear_attn_config"]["full_attn_layers"] = 4; },
       {"'linear_attn_config.full_attn_layers'", "expected a list"}},
      {"bool as string",
       [](json& j) { j["tie_word_embeddings"] = "false"; },
       {"'tie_word_embeddings'", "expected true or false"}},
      {"duplicate layer",
       [](json& j) { j["linear_attn_config"]["kda_layers"].push_back(2); },
       {"'linear_attn_config.kda_layers'", "'linear_attn_config.full_attn_layers'",
        "kda_layers lists layer 2 twice"}},
      {"layer out of range",
       [](json& j) { j["linear_attn_config"]["full_attn_layers"].push_back(28); },
       {"partition", "full_attn_layers lists layer 28 outside 1..27"}},
      {"layer zero (0-based list)",
       [](json& j) { j["linear_attn_config"]["kda_layers"][0] = 0; },
       {"partition", "layer 0 outside 1..27", "layer(s) 1 in neither list"}},
      {"missing layer",
       [](json& j) { j["linear_attn_config"]["full_attn_layers"].erase(6); },
       {"partition", "layer(s) 27 in neither list"}},
      {"overlapping lists",
       [](json& j) { j["linear_attn_config"]["kda_layers"].push_back(4); },
       {"partition", "layer 4 is in both lists"}},
      {"experts not divisible by groups",
       [](json& j) {
         j["num_experts"] = 255;
         j["num_expert_group"] = 2;
       },
       {"'num_expert_group'", "not divisible"}},
      {"topk_group above num_expert_group",
       [](json& j) {
         j["num_expert_group"] = 2;
         j["topk_group"] = 3;
       },
       {"'topk_group'", "exceeds num_expert_group 2"}},
      {"top-k above the experts in the chosen groups",
       [](json& j) {
         j["num_expert_group"] = 8;
         j["topk_group"] = 1;
         j["num_experts_per_token"] = 33;
       },
       {"'num_experts_per_token'", "33 exceeds the 32 experts"}},
      {"one expert per group",
       [](json& j) { j["num_expert_group"] = 256; },
       {"'num_expert_group'", "at least 2"}},
      {"zero size", [](json& j) { j["hidden_size"] = 0; }, {"'hidden_size'", "must be positive"}},
      {"negative heads",
       [](json& j) { j["linear_attn_config"]["num_heads"] = -4; },
       {"'linear_attn_config.num_heads'", "must be positive"}},
      {"conv kernel below 1",
       [](json& j) { j["linear_attn_config"]["short_conv_kernel_size"] = 0; },
       {"'linear_attn_config.short_conv_kernel_size'", "at least 1"}},
      {"moe_layer_freq 0",
       [](json& j) { j["moe_layer_freq"] = 0; },
       {"'moe_layer_freq'", "at least 1"}},
      {"negative shared experts",
       [](json& j) { j["num_shared_experts"] = -1; },
       {"'num_shared_experts'", "at least 0, got -1"}},
      {"zero groups",
       [](json& j) { j["num_expert_group"] = 0; },
       {"'num_expert_group'", "at least 1"}},
      {"huge first_k_dense_replace",
       [](json& j) { j["first_k_dense_replace"] = int64_t(1) << 40; },
       {"'first_k_dense_replace'", "implausibly large"}},
      {"non-positive eps", [](json& j) { j["rms_norm_eps"] = 0; }, {"'rms_norm_eps'", "positive"}},
      {"eos outside the vocabulary",
       [](json& j) {
         j["eos_token_id"] = {163586, 163840};
       },
       {"'eos_token_id'", "outside the vocabulary"}},
      {"q_lora_rank set",
       [](json& j) { j["q_lora_rank"] = 1536; },
       {"'q_lora_rank'", "not supported"}},
      {"mla_use_nope false",
       [](json& j) { j["mla_use_nope"] = false; },
       {"'mla_use_nope'", "not supported"}},
      {"mla_use_nope absent",
       [](json& j) { j.erase("mla_use_nope"); },
       {"'mla_use_nope'", "missing"}},
      {"softmax router",
       [](json& j) { j["moe_router_activation_func"] = "softmax"; },
       {"'moe_router_activation_func'", "\"softmax\" is not supported"}},
      {"gelu", [](json& j) { j["hidden_act"] = "gelu"; }, {"'hidden_act'", "not supported"}},
      {"rope scaling",
       [](json& j) {
         j["rope_scaling"] = {{"type", "yarn"}, {"factor", 4}};
       },
       {"'rope_scaling'", "must be null"}},
      {"MTP layers",
       [](json& j) { j["num_nextn_predict_layers"] = 1; },
       {"'num_nextn_predict_layers'", "not supported"}},
      {"other model type",
       [](json& j) { j["model_type"] = "deepseek_v3"; },
       {"'model_type'", "'deepseek_v3' is not supported"}},
      {"positive gate lower bound",
       [](json& j) { j["gate_lower_bound"] = 5.0; },
       {"'gate_lower_bound'", "must be negative"}},
      {"conflicting gate lower bounds",
       [](json& j) {
         j["gate_lower_bound"] = -5.0;
         j["linear_attn_config"]["gate_lower_bound"] = -3.0;
       },
       {"'gate_lower_bound'", "given twice"}},
  };
  const json base = kl::test::read_json_file(kl::test::real_config_path());
  REQUIRE(parse_error(base) == "<no error>");
  for (const Case& c : cases) {
    INFO("case: " << c.what);
    json j = base;
    c.mutate(j);
    const std::string msg = parse_error(j);
    INFO("message: " << msg);
    CHECK_THAT(msg, Contains("/cfg/fixture.json"));
    for (const std::string& s : c.expect) CHECK_THAT(msg, Contains(s));
  }
}

TEST_CASE("config: unreadable files are named", "[config]") {
  kl::test::TempDir dir;
  const std::string missing = dir.path() + "/absent.json";
  CHECK_THROWS_WITH(kl::load_model_config(missing), Contains(missing));
  const std::string bad = dir.path() + "/bad.json";
  kl::test::write_text_file(bad, "{\"model_type\": \"kimi_linear\",");
  CHECK_THROWS_WITH(kl::load_model_config(bad), Contains(bad) && Contains("not valid JSON"));
  kl::test::write_text_file(bad, "[1, 2]");
  CHECK_THROWS_WITH(kl::load_model_config(bad), Contains(bad) && Contains("JSON object"));
}
