// CPU reference executor throughput (a benchmark, not a test): prefill and decode tokens/s on a
// hub-layout model directory (default: tiny-a from the golden dir).
//   kl_cpu_bench [MODEL_DIR] [--prompt N] [--batch B] [--decode D]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "engine/checkpoint/weight_store.h"
#include "engine/core/error.h"
#include "engine/exec/cpu_executor.h"

using namespace kl;
using Clock = std::chrono::steady_clock;

namespace {

std::string default_model_dir() {
  if (const char* env = std::getenv("KL_GOLDEN_DIR"); env && *env)
    return std::string(env) + "/tiny-a/model";
  return std::string(KL_SOURCE_DIR) + "/../shared/golden/tiny-a/model";
}

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

}  // namespace

int main(int argc, char** argv) {
  std::string dir = default_model_dir();
  int prompt_len = 512, batch = 8, decode_steps = 32;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--prompt" && i + 1 < argc)
      prompt_len = std::atoi(argv[++i]);
    else if (a == "--batch" && i + 1 < argc)
      batch = std::atoi(argv[++i]);
    else if (a == "--decode" && i + 1 < argc)
      decode_steps = std::atoi(argv[++i]);
    else
      dir = a;
  }
  try {
    const ModelConfig config = load_model_config(dir + "/config.json");
    const WeightStore store = WeightStore::open(dir, config);
    const ModelWeights weights = bind_model_weights(config, store);
    const int64_t pages_per_seq = (prompt_len + decode_steps + kPageSize - 1) / kPageSize;
    CpuExecutor exec(config, weights, pages_per_seq * batch, batch);

    auto seq_step = [&](int b, std::vector<int32_t> tokens, int64_t computed, LogitsMode mode) {
      SeqStep s;
      s.seq_id = b;
      s.token_ids = std::move(tokens);
      s.num_computed_tokens = computed;
      for (int64_t p = 0; p < pages_per_seq; ++p)
        s.page_table.push_back(static_cast<int32_t>(b * pages_per_seq + p));
      s.state_block = b;
      s.reset_state = computed == 0;
      s.logits = mode;
      return s;
    };
    std::printf("model %s: %s\n", dir.c_str(), describe_layer_plan(config).c_str());

    for (int b_count : {1, batch}) {
      StepPlan prefill;
      for (int b = 0; b < b_count; ++b) {
        std::vector<int32_t> tokens(prompt_len);
        for (int i = 0; i < prompt_len; ++i)
          tokens[i] = static_cast<int32_t>((b * 131 + i * 17) % (config.vocab_size - 8));
        prefill.seqs.push_back(seq_step(b, tokens, 0, LogitsMode::kLast));
      }
      auto t0 = Clock::now();
      exec.submit(prefill);
      StepResult r = exec.collect();
      if (!r.ok) fail("prefill failed: {}", r.error);
      const double tp = seconds_since(t0);
      t0 = Clock::now();
      for (int d = 0; d < decode_steps; ++d) {
        StepPlan dec;
        dec.step_id = d + 1;
        for (int b = 0; b < b_count; ++b)
          dec.seqs.push_back(seq_step(b, {kPrevSampledToken}, prompt_len + d, LogitsMode::kLast));
        exec.submit(std::move(dec));
      }
      for (int d = 0; d < decode_steps; ++d)
        if (StepResult rd = exec.collect(); !rd.ok) fail("decode failed: {}", rd.error);
      const double td = seconds_since(t0);
      std::printf(
          "batch %2d: prefill %d x %d tokens in %.3f s = %.0f tok/s | decode %d steps in %.3f s "
          "= %.1f tok/s (%.2f ms/step)\n",
          b_count, b_count, prompt_len, tp, b_count * prompt_len / tp, decode_steps, td,
          b_count * decode_steps / td, 1e3 * td / decode_steps);
    }
  } catch (const Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
