// The embedded default model, created on first use.
#include "server/main/default_model.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include <unistd.h>

#include "engine/checkpoint/checkpoint_writer.h"
#include "engine/core/error.h"
#include "engine/core/log.h"
#include "server/tokenizer/default_tokenizer.h"

namespace kl {

namespace fs = std::filesystem;

nlohmann::json default_model_config() {
  using nlohmann::json;
  const int64_t vocab = tok::kDefaultVocabSize;  // 2,048 regular + 256 special ids
  return json{
      {"architectures", {"KimiLinearForCausalLM"}},
      {"model_type", "kimi_linear"},
      {"dtype", "bfloat16"},
      {"vocab_size", vocab},
      {"hidden_size", 256},
      {"num_hidden_layers", 4},
      {"num_attention_heads", 2},
      {"num_key_value_heads", 2},
      {"head_dim", 128},
      {"hidden_act", "silu"},
      {"intermediate_size", 512},
      {"moe_intermediate_size", 128},
      {"num_experts", 8},
      {"num_experts_per_token", 2},
      {"num_shared_experts", 1},
      {"first_k_dense_replace", 1},
      {"moe_layer_freq", 1},
      {"moe_router_activation_func", "sigmoid"},
      {"moe_renormalize", true},
      {"routed_scaling_factor", 2.446},
      {"use_grouped_topk", true},
      {"num_expert_group", 1},
      {"topk_group", 1},
      {"q_lora_rank", nullptr},
      {"kv_lora_rank", 256},  // a geometry the GPU MLA kernels are compiled for
      {"qk_nope_head_dim", 64},
      {"qk_rope_head_dim", 32},
      {"v_head_dim", 64},
      {"mla_use_nope", true},
      {"rope_theta", 10000.0},
      {"rope_scaling", nullptr},
      {"rms_norm_eps", 1e-5},
      {"tie_word_embeddings", false},
      {"model_max_length", 8192},
      {"num_nextn_predict_layers", 0},
      {"bos_token_id", tok::kDefaultNumRegularTokens},      // [BOS]
      {"eos_token_id", tok::kDefaultNumRegularTokens + 2},  // <|im_end|>
      {"pad_token_id", vocab - 1},                          // [PAD]
      {"linear_attn_config",
       {{"num_heads", 2},
        {"head_dim", 64},
        {"short_conv_kernel_size", 4},
        {"kda_layers", {1, 2, 4}},
        {"full_attn_layers", {3}}}},
  };
}

std::string default_model_dir() {
  fs::path cache;
  if (const char* d = std::getenv("KLSERVE_CACHE_DIR"); d && *d)
    cache = d;
  else if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x)
    cache = fs::path(x) / "klserve";
  else if (const char* h = std::getenv("HOME"); h && *h)
    cache = fs::path(h) / ".cache" / "klserve";
  else
    cache = "/tmp/klserve";
  return (cache / "default-model-v2").string();
}

std::string ensure_default_model() {
  const fs::path dir = default_model_dir();
  if (fs::exists(dir / "model.safetensors.index.json") && fs::exists(dir / "tiktoken.model"))
    return dir.string();
  auto log = logger("load");
  log->info("creating the embedded default model in {} (first run)", dir.string());
  std::error_code ec;
  fs::create_directories(dir.parent_path(), ec);
  if (ec)
    fail("cannot create the cache directory {}: {}", dir.parent_path().string(), ec.message());
  const fs::path tmp = dir.string() + ".tmp-" + std::to_string(::getpid());
  fs::remove_all(tmp, ec);
  const auto summary =
      write_random_checkpoint(default_model_config(), "<embedded default config>", tmp.string(),
                              /*seed=*/20261122, /*num_shards=*/2);
  tok::write_default_tokenizer(tmp.string());
  fs::remove_all(dir, ec);
  fs::rename(tmp, dir, ec);
  if (ec) fail("cannot move the default model into {}: {}", dir.string(), ec.message());
  log->info("embedded default model ready: {} tensors, {:.1f} MiB", summary.num_tensors,
            summary.total_bytes / 1048576.0);
  return dir.string();
}

}  // namespace kl
