// Device cache allocation and the cache operations of a StepPlan (block reset/copy, page copy).
#include "engine/exec/cuda/device_caches.h"

#include <cuda_runtime.h>

#include "engine/core/error.h"

namespace kl {
namespace {

void* device_alloc(int64_t bytes, const char* what) {
  void* p = nullptr;
  const cudaError_t e = cudaMalloc(&p, static_cast<size_t>(std::max<int64_t>(bytes, 1)));
  KL_CHECK(e == cudaSuccess, "cannot allocate {:.1f} MiB of GPU memory for {}: {}",
           bytes / 1048576.0, what, cudaGetErrorString(e));
  // Zeroed so that a never-written page or block reads as zeros, not garbage (NaN-safe tests).
  const cudaError_t z = cudaMemset(p, 0, static_cast<size_t>(std::max<int64_t>(bytes, 1)));
  KL_CHECK(z == cudaSuccess, "cudaMemset({}) failed: {}", what, cudaGetErrorString(z));
  return p;
}

void enqueue_ok(cudaError_t e, const char* what) {
  KL_CHECK(e == cudaSuccess, "{} failed: {}", what, cudaGetErrorString(e));
}

}  // namespace

DeviceCaches::DeviceCaches(const ModelConfig& config, int64_t num_pages, int64_t num_state_blocks,
                           DType activation)
    : spec_(cache_spec(config)),
      act_bytes_(dtype_size(activation)),
      num_pages_(num_pages),
      num_blocks_(num_state_blocks) {
  KL_CHECK(num_pages >= 0 && num_state_blocks >= 0, "negative cache size");
  window_values_ = spec_.kda_conv_values / 3;
  try {
    for (int i = 0; i < spec_.num_mla_layers; ++i) {
      const int64_t b = num_pages_ * kPageSize * spec_.mla_values_per_token * act_bytes_;
      mla_.push_back(device_alloc(b, "the MLA pages"));
      bytes_ += b;
    }
    for (int i = 0; i < spec_.num_kda_layers; ++i) {
      const int64_t s = num_blocks_ * spec_.kda_state_values * 4;
      states_.push_back(static_cast<float*>(device_alloc(s, "the KDA states")));
      const int64_t w = num_blocks_ * 3 * window_values_ * act_bytes_;
      windows_.push_back(device_alloc(w, "the KDA conv windows"));
      bytes_ += s + w;
    }
  } catch (...) {
    for (void* p : mla_) cudaFree(p);
    for (void* p : states_) cudaFree(p);
    for (void* p : windows_) cudaFree(p);
    throw;
  }
}

DeviceCaches::~DeviceCaches() {
  for (void* p : mla_) cudaFree(p);
  for (void* p : states_) cudaFree(p);
  for (void* p : windows_) cudaFree(p);
}

void DeviceCaches::check_block(int32_t block) const {
  KL_CHECK(block >= 0 && block < num_blocks_, "state block {} out of range [0, {})", block,
           num_blocks_);
}

void DeviceCaches::reset_block(int32_t block, CudaStream stream) {
  check_block(block);
  const int64_t s = spec_.kda_state_values * 4, w = 3 * window_values_ * act_bytes_;
  for (size_t i = 0; i < states_.size(); ++i) {
    enqueue_ok(cudaMemsetAsync(reinterpret_cast<char*>(states_[i]) + block * s, 0, s, stream),
               "state block reset");
    enqueue_ok(cudaMemsetAsync(static_cast<char*>(windows_[i]) + block * w, 0, w, stream),
               "state block reset");
  }
}

void DeviceCaches::copy_block(int32_t src, int32_t dst, CudaStream stream) {
  check_block(src);
  check_block(dst);
  if (src == dst) return;
  const int64_t s = spec_.kda_state_values * 4, w = 3 * window_values_ * act_bytes_;
  for (size_t i = 0; i < states_.size(); ++i) {
    char* st = reinterpret_cast<char*>(states_[i]);
    char* wn = static_cast<char*>(windows_[i]);
    enqueue_ok(cudaMemcpyAsync(st + dst * s, st + src * s, s, cudaMemcpyDeviceToDevice, stream),
               "state block copy");
    enqueue_ok(cudaMemcpyAsync(wn + dst * w, wn + src * w, w, cudaMemcpyDeviceToDevice, stream),
               "state block copy");
  }
}

void DeviceCaches::copy_page(int32_t src, int32_t dst, CudaStream stream) {
  KL_CHECK(src >= 0 && src < num_pages_ && dst >= 0 && dst < num_pages_,
           "page copy {} -> {} out of range [0, {})", src, dst, num_pages_);
  const int64_t page = kPageSize * spec_.mla_values_per_token * act_bytes_;
  for (void* layer : mla_) {
    char* p = static_cast<char*>(layer);
    enqueue_ok(
        cudaMemcpyAsync(p + dst * page, p + src * page, page, cudaMemcpyDeviceToDevice, stream),
        "page copy");
  }
}

}  // namespace kl
