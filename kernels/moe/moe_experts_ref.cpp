// CPU twins of the SwiGLU feed-forwards: the routed experts of a MoE layer (summed per token in
// selection order) and the dense FFN used by the shared expert and the dense layers.
#include <algorithm>
#include <vector>

#include "engine/core/error.h"
#include "kernels/activation/silu_mul.h"
#include "kernels/gemm/gemm.h"
#include "kernels/moe/moe.h"

namespace kl::kernels {
namespace {

// Tokens per block: bounds the intermediate buffers (the dense FFN is 9216 wide) while keeping
// enough rows per GEMM call to amortise the weight conversion. Rows are independent in gemm_ref,
// so the block size does not change any result.
constexpr int64_t kTokenBlock = 64;

// y[r] = down(silu(gate x[r]) * (up x[r])) for `m` contiguous rows; y is overwritten.
void swiglu_rows(const float* x, int64_t m, const WeightView& gate, const WeightView& up,
                 const WeightView& down, float* y, bool accumulate, std::vector<float>& h_gate,
                 std::vector<float>& h_up) {
  const int64_t inter = gate.rows;
  h_gate.resize(m * inter);
  h_up.resize(m * inter);
  gemm_ref({.x = x, .m = m, .w = gate, .out = h_gate.data()});
  gemm_ref({.x = x, .m = m, .w = up, .out = h_up.data()});
  silu_mul_ref({.gate = h_gate.data(), .up = h_up.data(), .n = m * inter, .out = h_gate.data()});
  gemm_ref({.x = h_gate.data(), .m = m, .w = down, .out = y, .accumulate = accumulate});
}

void check_ffn(const WeightView& gate, const WeightView& up, const WeightView& down,
               const char* what) {
  KL_CHECK(gate.rows == up.rows && gate.cols == up.cols && down.cols == gate.rows &&
               down.rows == gate.cols,
           "{}: inconsistent shapes gate [{}, {}] up [{}, {}] down [{}, {}]", what, gate.rows,
           gate.cols, up.rows, up.cols, down.rows, down.cols);
}

}  // namespace

void swiglu_ffn_ref(const SwigluFfnParams& p) {
  check_ffn(p.gate, p.up, p.down, "swiglu_ffn_ref");
  const int64_t hidden = p.gate.cols;
  std::vector<float> h_gate, h_up;
  for (int64_t t0 = 0; t0 < p.num_tokens; t0 += kTokenBlock) {
    const int64_t m = std::min(kTokenBlock, p.num_tokens - t0);
    swiglu_rows(p.x + t0 * hidden, m, p.gate, p.up, p.down, p.out + t0 * hidden, p.accumulate,
                h_gate, h_up);
  }
}

void moe_experts_ref(const MoeExpertsParams& p) {
  if (p.num_tokens == 0) return;
  KL_CHECK(p.top_k > 0 && p.w1 && p.w2 && p.w3, "moe_experts_ref: top_k {} or missing weights",
           p.top_k);
  const int64_t hidden = p.w2[0].rows;  // every expert has the same shape (checked per expert)
  const int64_t K = p.top_k;
  std::vector<float> y;       // [block tokens * top_k, hidden] expert outputs
  std::vector<float> xg, yg;  // gathered rows of one expert
  std::vector<float> h_gate, h_up;
  std::vector<std::vector<int64_t>> by_expert;  // expert -> pair indices (t * top_k + i)

  for (int64_t t0 = 0; t0 < p.num_tokens; t0 += kTokenBlock) {
    const int64_t nt = std::min(kTokenBlock, p.num_tokens - t0);
    // Group the block's (token, slot) pairs by expert so each expert's weights are converted once
    // per block; every row's result is the same as if it had been computed alone.
    for (auto& v : by_expert) v.clear();
    for (int64_t pair = 0; pair < nt * K; ++pair) {
      const int32_t e = p.expert_ids[t0 * K + pair];
      if (e < 0) continue;  // an unused slot (e.g. an expert owned by another rank)
      if (int64_t(by_expert.size()) <= e) by_expert.resize(e + 1);
      by_expert[e].push_back(pair);
    }
    y.assign(nt * K * hidden, 0.f);
    for (int64_t e = 0; e < int64_t(by_expert.size()); ++e) {
      const auto& pairs = by_expert[e];
      if (pairs.empty()) continue;
      check_ffn(p.w1[e], p.w3[e], p.w2[e], "moe_experts_ref");
      KL_CHECK(p.w2[e].rows == hidden, "moe_experts_ref: expert {} hidden {} != {}", e,
               p.w2[e].rows, hidden);
      const int64_t m = pairs.size();
      xg.resize(m * hidden);
      yg.resize(m * hidden);
      for (int64_t i = 0; i < m; ++i) {
        std::copy_n(p.x + (t0 + pairs[i] / K) * hidden, hidden, xg.data() + i * hidden);
      }
      swiglu_rows(xg.data(), m, p.w1[e], p.w3[e], p.w2[e], yg.data(), false, h_gate, h_up);
      for (int64_t i = 0; i < m; ++i) {
        std::copy_n(yg.data() + i * hidden, hidden, y.data() + pairs[i] * hidden);
      }
    }
    // Weighted sum in selection order (slot 0 first), onto the existing out when accumulating.
    for (int64_t t = 0; t < nt; ++t) {
      float* out = p.out + (t0 + t) * hidden;
      if (!p.accumulate) std::fill_n(out, hidden, 0.f);
      for (int64_t i = 0; i < K; ++i) {
        if (p.expert_ids[(t0 + t) * K + i] < 0) continue;
        const float w = p.weights[(t0 + t) * K + i];
        const float* yi = y.data() + (t * K + i) * hidden;
        for (int64_t c = 0; c < hidden; ++c) out[c] += w * yi[c];
      }
    }
  }
}

}  // namespace kl::kernels
