// The model's weights on the GPU: every tensor uploaded once into one device arena, GEMM weights
// converted to the activation dtype (fp32 runs get fp32 weights, so that cuBLAS computes a true
// fp32 GEMM), the MoE router in fp32 (DESIGN numerics contract), everything else as stored. Each
// MoE layer's experts are stacked ([E, rows, cols]) for the grouped expert GEMMs; projections that
// share an input are contiguous (DeviceFusedLayer).
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

// Projections of one layer that read the same input, placed back to back in the arena so that one
// GEMM computes them all (decode is latency-bound on many small GEMMs). Each is also reachable
// alone through weights().
struct DeviceFusedLayer {
  // KDA: q_proj, k_proj, v_proj, f_a_proj, g_a_proj stacked by rows: [3 HK + 2 K, hidden].
  WeightView kda_in_proj;
  // The dense FFN's (or the MoE shared expert's) gate_proj then up_proj: [2 inter, hidden].
  WeightView gate_up_proj;
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
  // Per layer index; each view is set where the layer has those projections.
  const DeviceFusedLayer& fused(int layer) const { return fused_[layer]; }
  int64_t bytes() const { return bytes_; }
  DType activation() const { return activation_; }

 private:
  DType activation_;
  ModelWeights weights_;
  std::vector<DeviceMoeLayer> moe_;
  std::vector<DeviceFusedLayer> fused_;
  void* arena_ = nullptr;
  int64_t bytes_ = 0;
};

// The bytes DeviceModel would take for this model and activation dtype (the memory plan).
int64_t device_model_bytes(const ModelConfig& config, const ModelWeights& host, DType activation);

}  // namespace kl
