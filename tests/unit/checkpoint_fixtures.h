// Fixtures shared by the config / safetensors / checkpoint tests: the released config (tests/data),
// a small config with the same structure, and a raw safetensors writer for malformed files.
#pragma once

#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/core/error.h"

namespace kl::test {

inline std::string source_path(const std::string& rel) {
  return std::string(KL_SOURCE_DIR) + "/" + rel;
}

// The released Kimi-Linear-48B-A3B-Instruct config.json (spec section 1 values).
inline std::string real_config_path() {
  return source_path("tests/data/kimi_linear_48b_a3b_config.json");
}

inline nlohmann::json read_json_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) fail("{}: cannot open", path);
  return nlohmann::json::parse(in);
}

inline void write_text_file(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
  if (!out.flush()) fail("{}: write failed", path);
}

// The real config shrunk to test size, keeping every structural feature: KDA and MLA layers
// (0-based KDA, KDA, MLA, KDA), a dense first layer, grouped routing (2 groups), 2 shared
// experts, an eos list.
inline nlohmann::json small_config_json() {
  nlohmann::json j = read_json_file(real_config_path());
  j["vocab_size"] = 96;
  j["hidden_size"] = 32;
  j["num_hidden_layers"] = 4;
  j["intermediate_size"] = 48;
  j["num_attention_heads"] = 2;
  j["num_key_value_heads"] = 2;
  j["kv_lora_rank"] = 16;
  j["qk_nope_head_dim"] = 8;
  j["qk_rope_head_dim"] = 4;
  j["v_head_dim"] = 8;
  j["num_experts"] = 4;
  j["num_experts_per_token"] = 2;
  j["num_shared_experts"] = 2;
  j["moe_intermediate_size"] = 16;
  j["num_expert_group"] = 2;
  j["topk_group"] = 1;
  j["bos_token_id"] = 90;
  j["eos_token_id"] = {91, 92};
  j["pad_token_id"] = 95;
  j["model_max_length"] = 4096;
  j["head_dim"] = 16;
  j["linear_attn_config"] = {{"num_heads", 2},
                             {"head_dim", 8},
                             {"short_conv_kernel_size", 4},
                             {"kda_layers", {1, 2, 4}},
                             {"full_attn_layers", {3}}};
  return j;
}

// A raw tensor entry for write_raw_safetensors: any dtype string, offsets given explicitly.
struct RawTensor {
  std::string name;
  std::string dtype;
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0;
};

// Writes [8-byte length][header][data_bytes of data] (defined in safetensors_test.cpp). With
// `sparse`, the data region is only ftruncate'd (a hole); otherwise it is written as the byte
// pattern i % 251.
void write_raw_safetensors(const std::string& path, const std::vector<RawTensor>& tensors,
                           uint64_t data_bytes, bool sparse = false);
// Same with a ready-made header string and a header length field that may lie.
void write_raw_safetensors(const std::string& path, const std::string& header,
                           uint64_t header_len_field, uint64_t data_bytes, bool sparse = false);

}  // namespace kl::test
