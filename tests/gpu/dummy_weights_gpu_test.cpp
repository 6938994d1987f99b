// Dummy weights generated on the GPU (`--load-format dummy --device cuda`) against the host
// generator: the same values element for element (both sides use engine/core/counter_random.h;
// only the last bit of double-precision log/sin/cos may differ between glibc and CUDA, which can
// flip a bf16 rounding in rare elements), and the same logits through the executor.
#include <catch2/catch.hpp>

#include <cuda_runtime.h>

#include <cstring>

#include "engine/checkpoint/weight_store.h"
#include "engine/exec/cuda/cuda_executor.h"
#include "engine/exec/cuda/device_model.h"
#include "tests/golden/golden_case.h"
#include "tests/support/test_support.h"

using namespace kl;
using namespace kl::test;

namespace {

ModelConfig tiny_config() {
  const auto dirs = golden_case_dirs();
  REQUIRE(!dirs.empty());
  return load_model_config(dirs.front() + "/model/config.json");
}

// The device copy of view `v` as raw 16- or 32-bit words.
std::vector<uint8_t> download(const WeightView& v) {
  std::vector<uint8_t> out(v.numel() * dtype_size(v.dtype));
  REQUIRE(cudaMemcpy(out.data(), v.data, out.size(), cudaMemcpyDeviceToHost) == cudaSuccess);
  return out;
}

}  // namespace

TEST_CASE("gpu dummy weights equal the host generator's, element by element", "[gpu][dummy]") {
  const ModelConfig config = tiny_config();
  const WeightStore host = WeightStore::dummy(config, 42);
  const WeightStore layout = WeightStore::dummy_layout(config, 42);
  REQUIRE(layout.layout_only());
  const ModelWeights hw = bind_model_weights(config, host);
  const ModelWeights lw = bind_model_weights(config, layout);
  // bf16 activations: weights keep their stored dtype, so the bytes compare directly.
  DeviceModel dev(config, lw, DType::kBF16, {}, &layout);
  int64_t total = 0, differing = 0;
  // Compared as fp32 values: the device copy may be widened (the router bias is kept in f32),
  // which is exact.
  auto compare = [&](const WeightView& h, const WeightView& d) {
    REQUIRE(h.numel() == d.numel());
    const auto got = download(d);
    for (int64_t i = 0; i < h.numel(); ++i)
      differing += load_as_f32(got.data(), d.dtype, i) != load_as_f32(h.data, h.dtype, i);
    total += h.numel();
  };
  compare(hw.embed_tokens, dev.weights().embed_tokens);
  compare(hw.lm_head, dev.weights().lm_head);
  for (const LayerSpec& l : config.plan.layers) {
    const LayerWeights& h = hw.layers[l.index];
    const LayerWeights& d = dev.weights().layers[l.index];
    compare(h.input_layernorm, d.input_layernorm);
    if (l.mixer == MixerKind::kKda) {
      compare(h.kda.q_proj, d.kda.q_proj);
      compare(h.kda.a_log, d.kda.a_log);
      compare(h.kda.dt_bias, d.kda.dt_bias);
      compare(h.kda.q_conv, d.kda.q_conv);
    } else {
      compare(h.mla.kv_b_proj, d.mla.kv_b_proj);
    }
    if (l.ffn == FfnKind::kMoe) {
      compare(h.moe.w1.back(), d.moe.w1.back());
      compare(h.moe.correction_bias, d.moe.correction_bias);
    }
  }
  INFO(differing << " of " << total << " elements differ");
  // A last-bit difference of libm's double results flips a rounding in ~1e-8 of elements;
  // anything systematic (a wrong key, distribution or rounding) changes most of them.
  CHECK(differing <= total / 100000);
  CHECK(total > 100000);
}

TEST_CASE("gpu dummy weights give the host-dummy model's logits", "[gpu][dummy]") {
  const ModelConfig config = tiny_config();
  const WeightStore host = WeightStore::dummy(config, 7);
  const WeightStore layout = WeightStore::dummy_layout(config, 7);
  CudaExecutorOptions o;
  o.activation = DType::kF32;
  o.num_pages = 8;
  o.num_state_blocks = 1;
  std::vector<float> logits[2];
  for (int k = 0; k < 2; ++k) {
    const ModelWeights w = bind_model_weights(config, k == 0 ? host : layout);
    if (k == 1) o.dummy_layout = &layout;
    CudaExecutor exec(config, w, o);
    StepPlan plan;
    SeqStep s;
    s.seq_id = 1;
    s.token_ids = {3, 1, 4, 1, 5, 9, 2, 6};
    s.state_block = 0;
    s.reset_state = true;
    s.logits = LogitsMode::kAll;
    s.page_table = {0};
    plan.seqs.push_back(s);
    plan.return_logits = true;
    auto r = exec.run_now(plan);
    REQUIRE(r.ok);
    logits[k] = r.outputs[0].logits;
  }
  // Identical weights give identical logits; a rare flipped bf16 weight moves them by ~1e-6.
  CHECK(rel_l2(logits[1], logits[0]) <= 1e-5);
}
