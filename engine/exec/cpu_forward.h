// The model's forward pass on the CPU reference kernels (fp32 activations), over a batch of
// sequence chunks that read and write the paged MLA cache and the KDA state blocks.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "engine/exec/kv_layout.h"
#include "engine/exec/step_plan.h"
#include "models/model_config.h"
#include "models/model_weights.h"

namespace kl {

// Host memory of both cache kinds, addressed by ids (principle 5).
class CpuCaches {
 public:
  CpuCaches(const ModelConfig& config, int64_t num_pages, int64_t num_state_blocks);

  int64_t num_pages() const { return num_pages_; }
  int64_t num_state_blocks() const { return num_blocks_; }

  // [num_pages, kPageSize, kv_lora + rope] fp32 for MLA layer `mla_index`.
  float* mla_layer(int mla_index) { return mla_[mla_index].data(); }
  // [H, V, K] fp32 recurrent state of KDA layer `kda_index` in state block `block`.
  float* kda_state(int32_t block, int kda_index);
  // [W-1, H*K] fp32 conv window of projection `which` (0 = q, 1 = k, 2 = v).
  float* kda_conv(int32_t block, int kda_index, int which);

  void reset_block(int32_t block);
  void copy_block(int32_t src, int32_t dst);
  // Copies one page of every MLA layer.
  void copy_page(int32_t src, int32_t dst);

 private:
  void check_block(int32_t block) const;

  CacheSpec spec_;
  int64_t num_pages_;
  int64_t num_blocks_;
  std::vector<std::vector<float>> mla_;  // per MLA layer: [num_pages, 64, 576]
  std::vector<float> blocks_;            // [num_blocks, block_values]
  int64_t block_values_ = 0;             // per block: per KDA layer state then 3 conv windows
  int64_t conv_window_values_ = 0;       // (W-1) * H * K
};

// Called with intermediate activations ([rows, hidden] over the step's tokens) for debugging and
// the per-layer golden comparison: names "embed", "layer{j}.mixer_out", "layer{j}.ffn_out",
// "layer{j}.out".
using ActivationSink =
    std::function<void(const std::string& name, const float* data, int64_t rows, int64_t cols)>;

// Runs one step. seqs' token ids must be resolved (no kPrevSampledToken). Appends one SeqOutput
// with logits per SeqStep whose LogitsMode is not kNone (sampled_token left at -1).
void cpu_forward(const ModelConfig& config, const ModelWeights& weights, CpuCaches& caches,
                 const std::vector<SeqStep>& seqs, std::vector<SeqOutput>& outputs,
                 const ActivationSink& sink = {});

}  // namespace kl
