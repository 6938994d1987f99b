// The model's weights on the GPU: every tensor uploaded once into one device arena, GEMM weights
// converted to the activation dtype (fp32 runs get fp32 weights, so that cuBLAS computes a true
// fp32 GEMM), the MoE router in fp32 (DESIGN numerics contract), everything else as stored. Each
// MoE layer's experts are stacked ([E, rows, cols]) for the grouped expert GEMMs.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "kernels/moe/moe_cuda.h"
#include "models/model_config.h"
#include "models/model_weights.h"

namespace kl {

class WeightStore;

struct DeviceMoeLayer {
  kernels::StackedWeights w1, w3, w2;  // [E, inter, hidden], [E, inter, hidden], [E, hidden, inter]
};

class DeviceModel {
 public:
  // Uploads `host` (views into a WeightStore). `progress` is called with the fraction done. With
  // `dummy_layout` (a layout-only store, WeightStore::dummy_layout), `host` views into it and
  // every tensor is generated on the GPU instead of copied.
  DeviceModel(const ModelConfig& config, const ModelWeights& host, DType activation,
              const std::function<void(double)>& progress = {},
              const WeightStore* dummy_layout = nullptr);
  ~DeviceModel();
  DeviceModel(const DeviceModel&) = delete;
  DeviceModel& operator=(const DeviceModel&) = delete;

  // The same structure as the host's, every view pointing at device memory.
  const ModelWeights& weights() const { return weights_; }
  // Per layer index; valid for MoE layers.
  const DeviceMoeLayer& moe(int layer) const { return moe_[layer]; }
  int64_t bytes() const { return bytes_; }
  DType activation() const { return activation_; }

 private:
  DType activation_;
  ModelWeights weights_;
  std::vector<DeviceMoeLayer> moe_;
  void* arena_ = nullptr;
  int64_t bytes_ = 0;
};

// The bytes DeviceModel would take for this model and activation dtype (the memory plan).
int64_t device_model_bytes(const ModelConfig& config, const ModelWeights& host, DType activation);

}  // namespace kl
