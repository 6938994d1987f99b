// Parses and validates a hub config.json into ModelConfig + LayerPlan. This file is the one place
// where the 1-based kda_layers / full_attn_layers lists become 0-based layer kinds.
#include "models/model_config.h"

#include <cmath>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "engine/core/error.h"

namespace kl {
namespace {

using nlohmann::json;

// Reads typed fields of one JSON object; every error names the field (dotted path) and the file.
class FieldReader {
 public:
  FieldReader(const json& obj, std::string source, std::string prefix = "")
      : obj_(obj), source_(std::move(source)), prefix_(std::move(prefix)) {}

  std::string path(std::string_view key) const { return prefix_ + std::string(key); }

  [[noreturn]] void error(std::string_view key, const std::string& what) const {
    fail("{}: field '{}': {}", source_, path(key), what);
  }

  // nullptr when absent; JSON null counts as present (callers decide what null means).
  const json* find(std::string_view key) const {
    auto it = obj_.find(std::string(key));
    return it == obj_.end() ? nullptr : &*it;
  }

  const json& require(std::string_view key) const {
    const json* v = find(key);
    if (!v) error(key, "missing");
    return *v;
  }

  int64_t to_int(std::string_view key, const json& v) const {
    if (!v.is_number_integer()) error(key, fmt::format("expected an integer, got {}", v.dump()));
    if (v.is_number_unsigned() && v.get<uint64_t>() > uint64_t(std::numeric_limits<int64_t>::max()))
      error(key, "integer out of range");
    return v.get<int64_t>();
  }

  int64_t get_int(std::string_view key) const { return to_int(key, require(key)); }
  int64_t get_int(std::string_view key, int64_t dflt) const {
    const json* v = find(key);
    return v ? to_int(key, *v) : dflt;
  }

  double to_float(std::string_view key, const json& v) const {
    // Integers are accepted for float fields (a hand-written "routed_scaling_factor": 1 is fine).
    if (!v.is_number()) error(key, fmt::format("expected a number, got {}", v.dump()));
    double d = v.get<double>();
    if (!std::isfinite(d)) error(key, "must be finite");
    return d;
  }
  double get_float(std::string_view key) const { return to_float(key, require(key)); }
  double get_float(std::string_view key, double dflt) const {
    const json* v = find(key);
    return v ? to_float(key, *v) : dflt;
  }

  bool to_bool(std::string_view key, const json& v) const {
    if (!v.is_boolean()) error(key, fmt::format("expected true or false, got {}", v.dump()));
    return v.get<bool>();
  }
  bool get_bool(std::string_view key) const { return to_bool(key, require(key)); }
  bool get_bool(std::string_view key, bool dflt) const {
    const json* v = find(key);
    return v ? to_bool(key, *v) : dflt;
  }

  std::string get_string(std::string_view key) const {
    const json& v = require(key);
    if (!v.is_string()) error(key, fmt::format("expected a string, got {}", v.dump()));
    return v.get<std::string>();
  }

  std::vector<int64_t> get_int_list(std::string_view key) const {
    const json& v = require(key);
    if (!v.is_array()) error(key, fmt::format("expected a list of integers, got {}", v.dump()));
    std::vector<int64_t> out;
    for (const json& e : v) out.push_back(to_int(key, e));
    return out;
  }

  int64_t positive(std::string_view key) const {
    int64_t v = get_int(key);
    if (v <= 0) error(key, fmt::format("must be positive, got {}", v));
    return v;
  }

  // Positive and small enough for an int (counts of heads, layers, experts).
  int positive_small(std::string_view key) const {
    int64_t v = positive(key);
    if (v > (1 << 24)) error(key, fmt::format("implausibly large: {}", v));
    return static_cast<int>(v);
  }

  // An optional small count with a lower bound (group counts, kernel widths, frequencies).
  int bounded_small(std::string_view key, int dflt, int min_value) const {
    int64_t v = get_int(key, dflt);
    if (v < min_value) error(key, fmt::format("must be at least {}, got {}", min_value, v));
    if (v > (1 << 24)) error(key, fmt::format("implausibly large: {}", v));
    return static_cast<int>(v);
  }

 private:
  const json& obj_;
  std::string source_;
  std::string prefix_;
};

// The two 1-based lists must together name every layer 1..N exactly once.
void check_partition(const FieldReader& lin, int n, const std::vector<int64_t>& kda,
                     const std::vector<int64_t>& full, const std::string& source) {
  std::vector<int> count_kda(n + 1, 0), count_full(n + 1, 0);
  std::vector<std::string> problems;
  auto tally = [&](const std::vector<int64_t>& list, std::vector<int>& count, const char* name) {
    for (int64_t l : list) {
      if (l < 1 || l > n) {
        problems.push_back(fmt::format("{} lists layer {} outside 1..{}", name, l, n));
        continue;
      }
      if (++count[l] == 2) problems.push_back(fmt::format("{} lists layer {} twice", name, l));
    }
  };
  tally(kda, count_kda, "kda_layers");
  tally(full, count_full, "full_attn_layers");
  std::vector<int> missing;
  for (int l = 1; l <= n; ++l) {
    if (count_kda[l] && count_full[l])
      problems.push_back(fmt::format("layer {} is in both lists", l));
    if (!count_kda[l] && !count_full[l]) missing.push_back(l);
  }
  if (!missing.empty())
    problems.push_back(fmt::format("layer(s) {} in neither list", fmt::join(missing, ",")));
  if (problems.empty()) return;
  fail("{}: fields '{}' and '{}' must partition the 1-based layers 1..{} (num_hidden_layers): {}",
       source, lin.path("kda_layers"), lin.path("full_attn_layers"), n, fmt::join(problems, "; "));
}

}  // namespace

ModelConfig parse_model_config(const json& j, const std::string& source) {
  if (!j.is_object()) fail("{}: expected a JSON object at the top level", source);
  FieldReader f(j, source);
  ModelConfig c;
  c.source = source;

  std::string model_type = f.get_string("model_type");
  if (model_type != "kimi_linear")
    f.error("model_type",
            fmt::format("'{}' is not supported (expected 'kimi_linear')", model_type));

  // Options klserve does not implement: reject them rather than compute something else.
  if (const json* v = f.find("hidden_act"); v && *v != "silu")
    f.error("hidden_act", fmt::format("{} is not supported (only \"silu\")", v->dump()));
  if (const json* v = f.find("moe_router_activation_func"); v && *v != "sigmoid")
    f.error("moe_router_activation_func",
            fmt::format("{} is not supported (only \"sigmoid\")", v->dump()));
  if (const json* v = f.find("q_lora_rank"); v && !v->is_null())
    f.error("q_lora_rank", fmt::format("{} is not supported (only null: plain q_proj)", v->dump()));
  if (const json* v = f.find("rope_scaling"); v && !v->is_null())
    f.error("rope_scaling", "must be null (Kimi Linear's MLA applies no rotary embedding)");
  // HF's remote code asserts mla_use_nope, so a config without it cannot be a working checkpoint.
  if (!f.get_bool("mla_use_nope"))
    f.error("mla_use_nope", "false is not supported (klserve implements NoPE MLA only)");
  if (f.get_int("num_nextn_predict_layers", 0) != 0)
    f.error("num_nextn_predict_layers", "multi-token-prediction layers are not supported (use 0)");

  c.vocab_size = f.positive("vocab_size");
  c.hidden_size = f.positive("hidden_size");
  c.num_hidden_layers = f.positive_small("num_hidden_layers");
  c.tie_word_embeddings = f.get_bool("tie_word_embeddings", false);
  // Top-level "head_dim" (hidden/heads) is deliberately ignored: neither MLA nor KDA uses it.

  c.rms_norm_eps = static_cast<float>(f.get_float("rms_norm_eps"));
  if (!(c.rms_norm_eps > 0.f)) f.error("rms_norm_eps", "must be positive");

  // transformers maps model_max_length to max_position_embeddings; accept either spelling.
  if (f.find("model_max_length")) {
    c.max_position_embeddings = f.positive("model_max_length");
  } else if (f.find("max_position_embeddings")) {
    c.max_position_embeddings = f.positive("max_position_embeddings");
  }

  auto token_id = [&](std::string_view key, const json& v) {
    int64_t id = f.to_int(key, v);
    if (id < 0 || id >= c.vocab_size)
      f.error(key, fmt::format("token id {} outside the vocabulary [0, {})", id, c.vocab_size));
    return id;
  };
  if (const json* v = f.find("bos_token_id"); v && !v->is_null())
    c.bos_token_id = token_id("bos_token_id", *v);
  if (const json* v = f.find("pad_token_id"); v && !v->is_null())
    c.pad_token_id = token_id("pad_token_id", *v);
  if (const json* v = f.find("eos_token_id"); v && !v->is_null()) {
    if (v->is_array()) {
      for (const json& e : *v) c.eos_token_ids.push_back(token_id("eos_token_id", e));
    } else {
      c.eos_token_ids.push_back(token_id("eos_token_id", *v));
    }
  }

  // MLA
  c.num_attention_heads = f.positive_small("num_attention_heads");
  c.kv_lora_rank = f.positive("kv_lora_rank");
  c.qk_nope_head_dim = f.positive("qk_nope_head_dim");
  c.qk_rope_head_dim = f.positive("qk_rope_head_dim");
  c.v_head_dim = f.positive("v_head_dim");

  // KDA
  const json& lin_json = f.require("linear_attn_config");
  if (!lin_json.is_object())
    f.error("linear_attn_config", fmt::format("expected an object, got {}", lin_json.dump()));
  FieldReader lin(lin_json, source, "linear_attn_config.");
  c.kda_num_heads = lin.positive_small("num_heads");
  c.kda_head_dim = lin.positive("head_dim");
  c.short_conv_kernel_size = lin.bounded_small("short_conv_kernel_size", 4, 1);
  // gate_lower_bound selects the lower-bounded gate (spec 3.2 step 6); it may sit at either level.
  const json* lb_top = f.find("gate_lower_bound");
  const json* lb_lin = lin.find("gate_lower_bound");
  if (lb_top && lb_top->is_null()) lb_top = nullptr;
  if (lb_lin && lb_lin->is_null()) lb_lin = nullptr;
  if (lb_top && lb_lin && *lb_top != *lb_lin)
    f.error("gate_lower_bound",
            "given twice (top level and linear_attn_config) with different values");
  if (lb_top || lb_lin) {
    const FieldReader& r = lb_top ? f : lin;
    double lb = r.to_float("gate_lower_bound", lb_top ? *lb_top : *lb_lin);
    if (!(lb < 0)) r.error("gate_lower_bound", fmt::format("must be negative, got {}", lb));
    c.has_gate_lower_bound = true;
    c.gate_lower_bound = static_cast<float>(lb);
  }
  std::vector<int64_t> kda_layers = lin.get_int_list("kda_layers");
  std::vector<int64_t> full_layers = lin.get_int_list("full_attn_layers");
  check_partition(lin, c.num_hidden_layers, kda_layers, full_layers, source);

  // MoE
  c.num_experts = f.positive_small("num_experts");
  c.num_experts_per_token = f.positive_small("num_experts_per_token");
  c.moe_intermediate_size = f.positive("moe_intermediate_size");
  c.num_shared_experts = f.bounded_small("num_shared_experts", 0, 0);
  c.first_k_dense_replace = f.bounded_small("first_k_dense_replace", 0, 0);
  c.moe_layer_freq = f.bounded_small("moe_layer_freq", 1, 1);
  c.moe_renormalize = f.get_bool("moe_renormalize", true);
  c.routed_scaling_factor = static_cast<float>(f.get_float("routed_scaling_factor", 1.0));
  if (!(c.routed_scaling_factor > 0.f)) f.error("routed_scaling_factor", "must be positive");
  c.num_expert_group = f.bounded_small("num_expert_group", 1, 1);
  c.topk_group = f.bounded_small("topk_group", 1, 1);
  if (!f.get_bool("use_grouped_topk", true)) {
    // Plain top-k over all experts is grouped top-k with one group.
    c.num_expert_group = 1;
    c.topk_group = 1;
  }
  if (c.num_experts % c.num_expert_group != 0)
    f.error("num_expert_group", fmt::format("num_experts {} is not divisible by {} groups",
                                            c.num_experts, c.num_expert_group));
  if (c.topk_group > c.num_expert_group)
    f.error("topk_group",
            fmt::format("{} exceeds num_expert_group {}", c.topk_group, c.num_expert_group));
  const int per_group = c.num_experts / c.num_expert_group;
  // Group scores are the sum of each group's top-2 expert scores (DeepSeek-V3 routing).
  if (c.num_expert_group > 1 && per_group < 2)
    f.error("num_expert_group", fmt::format("{} groups leave {} expert per group; grouped routing "
                                            "needs at least 2",
                                            c.num_expert_group, per_group));
  if (c.num_experts_per_token > c.topk_group * per_group)
    f.error(
        "num_experts_per_token",
        fmt::format("{} exceeds the {} experts available in topk_group={} groups of {}",
                    c.num_experts_per_token, c.topk_group * per_group, c.topk_group, per_group));

  // The layer plan: the only conversion from the 1-based lists.
  std::set<int64_t> kda_set(kda_layers.begin(), kda_layers.end());
  LayerPlan& plan = c.plan;
  bool any_dense = false;
  for (int i = 0; i < c.num_hidden_layers; ++i) {
    LayerSpec s;
    s.index = i;
    s.mixer = kda_set.count(i + 1) ? MixerKind::kKda : MixerKind::kMla;
    if (s.mixer == MixerKind::kKda) {
      s.kda_index = plan.num_kda_layers++;
    } else {
      s.mla_index = plan.num_mla_layers++;
    }
    // DeepSeek rule shared by HF and vLLM: MoE from first_k_dense_replace on, every freq-th layer.
    bool moe = i >= c.first_k_dense_replace && i % c.moe_layer_freq == 0;
    s.ffn = moe ? FfnKind::kMoe : FfnKind::kDense;
    any_dense |= !moe;
    plan.layers.push_back(s);
  }
  // intermediate_size sizes only the dense FFN; a config without dense layers may omit it.
  if (any_dense || f.find("intermediate_size"))
    c.intermediate_size = f.positive("intermediate_size");
  return c;
}

ModelConfig load_model_config(const std::string& path) {
  std::ifstream in(path);
  if (!in) fail("{}: cannot open the model config", path);
  json j;
  try {
    j = json::parse(in);
  } catch (const json::parse_error& e) {
    fail("{}: not valid JSON: {}", path, e.what());
  }
  return parse_model_config(j, path);
}

std::string describe_layer_plan(const ModelConfig& c) {
  std::vector<int> mla, dense;
  for (const LayerSpec& s : c.plan.layers) {
    if (s.mixer == MixerKind::kMla) mla.push_back(s.index);
    if (s.ffn == FfnKind::kDense) dense.push_back(s.index);
  }
  const int num_moe = c.num_hidden_layers - static_cast<int>(dense.size());
  std::string out =
      fmt::format("{} layers: {} KDA + {} MLA (MLA at {}), {} dense (at {}) + {} MoE",
                  c.num_hidden_layers, c.plan.num_kda_layers, c.plan.num_mla_layers,
                  mla.empty() ? "none" : fmt::format("{}", fmt::join(mla, ",")), dense.size(),
                  dense.empty() ? "none" : fmt::format("{}", fmt::join(dense, ",")), num_moe);
  out +=
      fmt::format(" ({} experts, top-{}, {} shared, groups {}/{})", c.num_experts,
                  c.num_experts_per_token, c.num_shared_experts, c.topk_group, c.num_expert_group);
  if (c.has_gate_lower_bound) out += fmt::format(", KDA gate lower bound {}", c.gate_lower_bound);
  return out;
}

}  // namespace kl
