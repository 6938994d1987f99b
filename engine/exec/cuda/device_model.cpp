// Weight upload: plan every tensor's place in one arena (with its target dtype), allocate once,
// then copy tensor by tensor, converting on the device through a staging buffer where needed.
#include "engine/exec/cuda/device_model.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <map>

#include "engine/checkpoint/weight_store.h"
#include "engine/core/error.h"
#include "engine/core/log.h"
#include "kernels/cuda/copy_cuda.h"
#include "kernels/cuda/dummy_fill_cuda.h"

namespace kl {
namespace {

constexpr int64_t kAlign = 256;
constexpr int64_t kStagingBytes = int64_t{64} << 20;

void cuda_ok(cudaError_t e, const char* what) {
  KL_CHECK(e == cudaSuccess, "weight upload: {} failed: {}", what, cudaGetErrorString(e));
}

int64_t align_up(int64_t v) {
  return (v + kAlign - 1) / kAlign * kAlign;
}

// One tensor (or one expert's slice of a stacked tensor) to upload.
struct Upload {
  WeightView host;
  DType target = DType::kBF16;
  int64_t offset = 0;  // bytes into the arena
};

// Walks the model's tensors in a fixed order, assigning arena offsets and filling the device-side
// views; the same walk sizes the arena (dry run) and plans the upload.
class UploadPlanner {
 public:
  UploadPlanner(const ModelConfig& c, DType act) : c_(c), act_(act) {}

  void plan(const ModelWeights& host, ModelWeights& dev, std::vector<DeviceMoeLayer>& moe,
            std::vector<DeviceFusedLayer>& fused) {
    dev.layers.resize(host.layers.size());
    moe.assign(host.layers.size(), {});
    fused.assign(host.layers.size(), {});
    tensor(host.embed_tokens, host.embed_tokens.dtype, dev.embed_tokens);
    tensor(host.final_norm, host.final_norm.dtype, dev.final_norm);
    tensor(host.lm_head, act_, dev.lm_head);
    for (const LayerSpec& spec : c_.plan.layers) {
      const LayerWeights& h = host.layers[spec.index];
      LayerWeights& d = dev.layers[spec.index];
      tensor(h.input_layernorm, h.input_layernorm.dtype, d.input_layernorm);
      tensor(h.post_attention_layernorm, h.post_attention_layernorm.dtype,
             d.post_attention_layernorm);
      if (spec.mixer == MixerKind::kKda) {
        const KdaWeights& k = h.kda;
        KdaWeights& o = d.kda;
        fused[spec.index].kda_in_proj = rows_together({{&k.q_proj, &o.q_proj},
                                                       {&k.k_proj, &o.k_proj},
                                                       {&k.v_proj, &o.v_proj},
                                                       {&k.f_a_proj, &o.f_a_proj},
                                                       {&k.g_a_proj, &o.g_a_proj}});
        for (auto [hv, dv] : {std::pair{&k.f_b_proj, &o.f_b_proj},
                              {&k.b_proj, &o.b_proj},
                              {&k.g_b_proj, &o.g_b_proj},
                              {&k.o_proj, &o.o_proj}})
          tensor(*hv, act_, *dv);
        for (auto [hv, dv] : {std::pair{&k.q_conv, &o.q_conv},
                              {&k.k_conv, &o.k_conv},
                              {&k.v_conv, &o.v_conv},
                              {&k.a_log, &o.a_log},
                              {&k.dt_bias, &o.dt_bias},
                              {&k.o_norm, &o.o_norm}})
          tensor(*hv, hv->dtype, *dv);
      } else {
        const MlaWeights& m = h.mla;
        MlaWeights& o = d.mla;
        for (auto [hv, dv] : {std::pair{&m.q_proj, &o.q_proj},
                              {&m.kv_a_proj_with_mqa, &o.kv_a_proj_with_mqa},
                              {&m.kv_b_proj, &o.kv_b_proj},
                              {&m.o_proj, &o.o_proj}})
          tensor(*hv, act_, *dv);
        tensor(m.kv_a_layernorm, m.kv_a_layernorm.dtype, o.kv_a_layernorm);
      }
      if (spec.ffn == FfnKind::kDense) {
        fused[spec.index].gate_up_proj = dense(h.dense, d.dense);
      } else {
        const MoeWeights& m = h.moe;
        MoeWeights& o = d.moe;
        tensor(m.router, DType::kF32, o.router);
        tensor(m.correction_bias, DType::kF32, o.correction_bias);
        o.has_shared = m.has_shared;
        if (m.has_shared) fused[spec.index].gate_up_proj = dense(m.shared, o.shared);
        DeviceMoeLayer& s = moe[spec.index];
        s.w1 = stacked(m.w1, o.w1);
        s.w3 = stacked(m.w3, o.w3);
        s.w2 = stacked(m.w2, o.w2);
      }
    }
  }

  void set_base(char* base) { base_ = base; }
  int64_t size() const { return size_; }
  const std::vector<Upload>& uploads() const { return uploads_; }

 private:
  // Returns the [2 inter, hidden] view of gate_proj and up_proj together.
  WeightView dense(const DenseFfnWeights& h, DenseFfnWeights& d) {
    const WeightView gate_up =
        rows_together({{&h.gate_proj, &d.gate_proj}, {&h.up_proj, &d.up_proj}});
    tensor(h.down_proj, act_, d.down_proj);
    return gate_up;
  }

  // GEMM weights of one input width, converted to the activation dtype and placed back to back
  // (no alignment padding between them): the returned view stacks their rows.
  WeightView rows_together(std::initializer_list<std::pair<const WeightView*, WeightView*>> parts) {
    const int64_t elem = static_cast<int64_t>(dtype_size(act_));
    const int64_t cols = parts.begin()->first->cols;
    const int64_t start = size_;
    int64_t at = start, rows = 0;
    for (auto [h, d] : parts) {
      KL_CHECK(h->cols == cols, "weights stacked for one GEMM have {} and {} columns", cols,
               h->cols);
      uploads_.push_back({*h, act_, at});
      *d = {base_ ? base_ + at : nullptr, act_, h->rows, h->cols};
      at += h->numel() * elem;
      rows += h->rows;
    }
    size_ = align_up(at);
    return {base_ ? base_ + start : nullptr, act_, rows, cols};
  }

  // A tied lm_head shares the embedding's data: upload such a (data, dtype) pair once.
  void tensor(const WeightView& h, DType target, WeightView& d) {
    const auto key = std::pair{h.data, target};
    auto it = placed_.find(key);
    int64_t offset;
    if (it != placed_.end()) {
      offset = it->second;
    } else {
      offset = size_;
      size_ = align_up(size_ + h.numel() * static_cast<int64_t>(dtype_size(target)));
      placed_[key] = offset;
      uploads_.push_back({h, target, offset});
    }
    d = {base_ ? base_ + offset : nullptr, target, h.rows, h.cols};
  }

  kernels::StackedWeights stacked(const std::vector<WeightView>& h, std::vector<WeightView>& d) {
    KL_CHECK(!h.empty(), "MoE layer without experts");
    const int64_t each = h[0].numel() * static_cast<int64_t>(dtype_size(act_));
    const int64_t offset = size_;
    d.resize(h.size());
    for (size_t e = 0; e < h.size(); ++e) {
      KL_CHECK(h[e].rows == h[0].rows && h[e].cols == h[0].cols, "expert {} has another shape", e);
      uploads_.push_back({h[e], act_, offset + static_cast<int64_t>(e) * each});
      d[e] = {base_ ? base_ + offset + e * each : nullptr, act_, h[e].rows, h[e].cols};
    }
    size_ = align_up(size_ + each * static_cast<int64_t>(h.size()));
    return {base_ ? base_ + offset : nullptr, act_, static_cast<int64_t>(h.size()), h[0].rows,
            h[0].cols};
  }

  const ModelConfig& c_;
  DType act_;
  char* base_ = nullptr;
  int64_t size_ = 0;
  std::map<std::pair<const void*, DType>, int64_t> placed_;
  std::vector<Upload> uploads_;
};

// Generates a dummy tensor (or one expert's slice, itself a whole tensor) in place on the GPU.
void fill_dummy(const WeightStore& layout, const Upload& u, void* dst) {
  const auto recipe = layout.dummy_recipe_at(u.host.data);
  KL_CHECK(recipe.has_value(), "dummy weights: a view that is not a tensor of the layout");
  const DummyRecipe& r = recipe->second;
  kernels::DummyFillCudaParams p;
  switch (r.init) {
    case DummyInit::kNormWeight:
      p.dist = kernels::DummyDist::kUniform;
      p.offset = 0.5f;
      break;
    case DummyInit::kALog:
      p.dist = kernels::DummyDist::kLogUniform;
      break;
    default:
      p.dist = kernels::DummyDist::kNormal;
      p.scale = r.stddev;
      break;
  }
  p.key = r.key;
  p.n = u.host.numel();
  p.stored = u.host.dtype;
  p.target = u.target;
  p.out = dst;
  kernels::dummy_fill_cuda(p, nullptr);
  cuda_ok(cudaStreamSynchronize(nullptr), "dummy weight generation");
}

}  // namespace

int64_t device_model_bytes(const ModelConfig& config, const ModelWeights& host, DType activation) {
  UploadPlanner planner(config, activation);
  ModelWeights dev;
  std::vector<DeviceMoeLayer> moe;
  std::vector<DeviceFusedLayer> fused;
  planner.plan(host, dev, moe, fused);
  return planner.size();
}

DeviceModel::DeviceModel(const ModelConfig& config, const ModelWeights& host, DType activation,
                         const std::function<void(double)>& progress,
                         const WeightStore* dummy_layout)
    : activation_(activation) {
  KL_CHECK(activation == DType::kF32 || activation == DType::kBF16,
           "activation dtype must be float32 or bfloat16");
  UploadPlanner sizing(config, activation);
  {
    ModelWeights dry;
    std::vector<DeviceMoeLayer> moe;
    std::vector<DeviceFusedLayer> fused;
    sizing.plan(host, dry, moe, fused);
  }
  bytes_ = sizing.size();
  const cudaError_t e = cudaMalloc(&arena_, static_cast<size_t>(bytes_));
  KL_CHECK(e == cudaSuccess, "cannot allocate {:.1f} MiB of GPU memory for the weights: {}",
           bytes_ / 1048576.0, cudaGetErrorString(e));
  UploadPlanner planner(config, activation);
  planner.set_base(static_cast<char*>(arena_));
  planner.plan(host, weights_, moe_, fused_);

  void* staging = nullptr;
  cuda_ok(cudaMalloc(&staging, kStagingBytes), "cudaMalloc(staging)");
  try {
    int64_t total = 0, done = 0;
    for (const Upload& u : planner.uploads())
      total += u.host.numel() * static_cast<int64_t>(dtype_size(u.host.dtype));
    for (const Upload& u : planner.uploads()) {
      char* dst = static_cast<char*>(arena_) + u.offset;
      const int64_t n = u.host.numel();
      const int64_t src_size = static_cast<int64_t>(dtype_size(u.host.dtype));
      if (dummy_layout) {
        fill_dummy(*dummy_layout, u, dst);
      } else if (u.host.dtype == u.target) {
        cuda_ok(cudaMemcpy(dst, u.host.data, n * src_size, cudaMemcpyHostToDevice), "cudaMemcpy");
      } else {
        // Chunks of the staging buffer: copy the stored bytes, convert into place.
        const int64_t chunk = kStagingBytes / src_size;
        const int64_t dst_size = static_cast<int64_t>(dtype_size(u.target));
        for (int64_t i = 0; i < n; i += chunk) {
          const int64_t len = std::min(chunk, n - i);
          cuda_ok(cudaMemcpy(staging, static_cast<const char*>(u.host.data) + i * src_size,
                             len * src_size, cudaMemcpyHostToDevice),
                  "cudaMemcpy");
          kernels::convert_cuda(staging, u.host.dtype, dst + i * dst_size, u.target, len, nullptr);
          cuda_ok(cudaStreamSynchronize(nullptr), "weight conversion");
        }
      }
      done += n * src_size;
      if (progress)
        progress(static_cast<double>(done) / static_cast<double>(std::max<int64_t>(total, 1)));
    }
  } catch (...) {
    cudaFree(staging);
    cudaFree(arena_);
    throw;
  }
  cudaFree(staging);
}

DeviceModel::~DeviceModel() {
  cudaFree(arena_);
}

}  // namespace kl
