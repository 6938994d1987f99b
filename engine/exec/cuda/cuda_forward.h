// The model's forward pass on the GPU kernels, templated on the activation type behind this
// interface: the layers over a StepBatch, then logits for chosen rows.
#pragma once

#include <cstdint>
#include <memory>

#include "engine/exec/cuda/device_caches.h"
#include "engine/exec/cuda/device_model.h"
#include "engine/exec/cuda/kernel_profiler.h"
#include "engine/exec/cuda/step_batch.h"
#include "models/model_config.h"

namespace kl {

struct ForwardLimits {
  int64_t max_tokens = 0;      // token rows per step (max_num_batched_tokens)
  int64_t max_logit_rows = 0;  // rows per compute_logits() call
};

class CudaForward {
 public:
  virtual ~CudaForward() = default;

  // Device bytes of activations and scratch held (the memory plan).
  virtual int64_t workspace_bytes() const = 0;

  // Runs every layer over the batch (its device metadata uploaded), reading and writing the
  // caches; leaves the final hidden state (before the final norm) of every row.
  virtual void run_layers(const StepBatch& b, DeviceCaches& caches, CudaStream stream) = 0;

  // fp32 logits [count, vocab] of rows d_rows[0, count) (count <= max_logit_rows), into
  // logits(); call after run_layers().
  virtual void compute_logits(const int32_t* d_rows, int64_t count, CudaStream stream) = 0;
  virtual const float* logits() const = 0;

  // The per-kernel-class timer (disabled unless the executor turns profiling on).
  virtual KernelProfiler& profiler() = 0;

  // Allocates the activations and the kernels' scratch for `limits`.
  static std::unique_ptr<CudaForward> create(const ModelConfig& config, const DeviceModel& model,
                                             const ForwardLimits& limits);
};

}  // namespace kl
