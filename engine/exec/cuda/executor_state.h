// The CUDA executor's internals, shared by its construction (cuda_executor.cpp) and its step
// execution (cuda_step.cpp). Not part of any public interface.
#pragma once

#include <cuda_runtime.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "engine/core/error.h"
#include "engine/exec/cuda/cuda_executor.h"
#include "engine/exec/cuda/cuda_forward.h"
#include "engine/exec/cuda/device_caches.h"
#include "engine/exec/cuda/device_model.h"
#include "engine/exec/cuda/step_batch.h"
#include "kernels/sampling/sampling_cuda.h"

namespace kl {

inline void cuda_ok(cudaError_t e, const char* what) {
  KL_CHECK(e == cudaSuccess, "{} failed: {}", what, cudaGetErrorString(e));
}

template <typename T>
class DeviceVector {
 public:
  explicit DeviceVector(int64_t n) {
    cuda_ok(cudaMalloc(&p_, static_cast<size_t>(std::max<int64_t>(n, 1)) * sizeof(T)),
            "cudaMalloc(sampler outputs)");
  }
  ~DeviceVector() { cudaFree(p_); }
  DeviceVector(const DeviceVector&) = delete;
  DeviceVector& operator=(const DeviceVector&) = delete;
  T* get() const { return p_; }

 private:
  T* p_ = nullptr;
};

struct CudaExecutor::State {
  ModelConfig config;
  CudaExecutorOptions options;
  GpuMemoryPlan plan;
  cudaStream_t stream = nullptr;
  std::unique_ptr<DeviceModel> model;
  std::unique_ptr<CudaForward> forward;
  std::unique_ptr<kernels::GpuSampler> sampler;
  std::unique_ptr<DeviceCaches> caches;
  int64_t max_logit_rows = 0;
  std::unique_ptr<DeviceVector<int32_t>> out_tokens, out_top_tokens;
  std::unique_ptr<DeviceVector<float>> out_logprobs, out_top_logprobs;
  MetadataUploader batch_upload, sampling_upload;
  // CUDA graphs of whole decode steps, one per padded batch size (see cuda_step.cpp).
  std::map<int64_t, cudaGraphExec_t> graphs;
  std::vector<int64_t> graph_buckets;  // ascending; empty: graphs off
  MetadataUploader graph_batch_upload, graph_sampling_upload;
  int32_t pad_block = -1;  // reserved for the padding rows of graph steps
  int32_t pad_page = -1;
  int64_t graph_page_stride = 0;
  int64_t graph_replays = 0;
  bool graphs_paused = false;  // set_cuda_graphs(false)
  SeqRegistry registry;
  StepBatch batch;
  int64_t steps = 0;
  std::string fatal;  // set once a CUDA error happened: every later step fails with it

  ~State() {
    for (auto& [b, g] : graphs) cudaGraphExecDestroy(g);
    caches.reset();
    sampler.reset();
    forward.reset();
    model.reset();
    if (stream) cudaStreamDestroy(stream);
  }
};

}  // namespace kl
