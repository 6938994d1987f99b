// Both cache kinds in GPU memory, addressed by ids (principle 5): per MLA layer the paged latent
// cache, per KDA layer the recurrent states (fp32) and the conv windows (activation dtype) of
// every state block.
#pragma once

#include <cstdint>
#include <vector>

#include "engine/core/dtype.h"
#include "engine/exec/kv_layout.h"
#include "kernels/cuda/cuda_fwd.h"
#include "models/model_config.h"

namespace kl {

class DeviceCaches {
 public:
  DeviceCaches(const ModelConfig& config, int64_t num_pages, int64_t num_state_blocks,
               DType activation);
  ~DeviceCaches();
  DeviceCaches(const DeviceCaches&) = delete;
  DeviceCaches& operator=(const DeviceCaches&) = delete;

  int64_t num_pages() const { return num_pages_; }
  int64_t num_state_blocks() const { return num_blocks_; }
  int64_t bytes() const { return bytes_; }

  // [num_pages, kPageSize, kv_lora + rope] in the activation dtype.
  void* mla_layer(int mla_index) const { return mla_[mla_index]; }
  // [num_blocks, H, V, K] fp32.
  float* kda_states(int kda_index) const { return states_[kda_index]; }
  // [num_blocks, 3 (q, k, v), W-1, H*K] in the activation dtype.
  void* kda_windows(int kda_index) const { return windows_[kda_index]; }
  // Elements between two blocks' windows, and between the q, k and v windows of one block.
  int64_t window_block_stride() const { return 3 * window_values_; }
  int64_t window_values() const { return window_values_; }

  // Enqueued on `stream`; ids are checked (kl::Error).
  void reset_block(int32_t block, CudaStream stream);
  void copy_block(int32_t src, int32_t dst, CudaStream stream);
  void copy_page(int32_t src, int32_t dst, CudaStream stream);

 private:
  void check_block(int32_t block) const;

  CacheSpec spec_;
  size_t act_bytes_;
  int64_t num_pages_;
  int64_t num_blocks_;
  int64_t window_values_ = 0;  // (W-1) * H * K
  int64_t bytes_ = 0;
  std::vector<void*> mla_;
  std::vector<float*> states_;
  std::vector<void*> windows_;
};

}  // namespace kl
