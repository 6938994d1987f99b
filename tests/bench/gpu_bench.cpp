// The CUDA executor at the real model's shapes (a benchmark, not a test): decode TPOT and tok/s
// at several batch sizes on synthetic caches, prefill tok/s and TTFT, the share of a decode step
// per kernel class, and, in the same run, the GPU's measured ceilings (device-to-device copy
// bandwidth and a large cuBLAS bf16 GEMM) with every figure's ratio to its floor
// (../shared/perf/ROOFLINE.md), the floors derived from the config (so a cut-down model gets its
// own). Weights are dummy, generated on the GPU.
//   kl_gpu_bench --config CONFIG.json [--context 4096] [--batches 1,8,64,256] [--steps 20]
//                [--prefill 4096] [--prefill-seqs 1,8] [--mem 0.92] [--max-batched 16384]
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "engine/checkpoint/weight_store.h"
#include "engine/core/error.h"
#include "engine/exec/cuda/cuda_executor.h"
#include "engine/exec/kv_layout.h"
#include "kernels/gemm/gemm_cuda.h"

using namespace kl;
using Clock = std::chrono::steady_clock;

namespace {

// The bytes a decode step must move (ROOFLINE.md's model; for the real config this reproduces its
// table: 1.47, 5.9, 21.6, 29.8 and 35.8 ms at batch 1, 8, 64, 256, 472 and 4.3 TB/s): every
// weight once except the routed experts and the embedding; per MoE layer the experts the batch
// touches under uniform routing, E (1 - (1 - k/E)^B) of them; the embedding's B rows; each
// sequence's MLA latent cache (bf16); the KDA fp32 state and the conv windows, read and written.
// Derived from the config, so a cut-down model (fewer layers) gets its own floor.
double decode_floor_bytes(const ModelConfig& c, const WeightStore& layout, int batch, int context) {
  double fixed = 0, experts = 0;
  for (const TensorInfo& t : layout.tensors()) {
    if (t.name.find(".block_sparse_moe.experts.") != std::string::npos)
      experts += static_cast<double>(t.nbytes);
    else if (t.name == "model.embed_tokens.weight")
      fixed += static_cast<double>(t.nbytes) / c.vocab_size * batch;
    else
      fixed += static_cast<double>(t.nbytes);
  }
  const double touched =
      c.num_experts > 0
          ? 1.0 - std::pow(1.0 - double(c.num_experts_per_token) / c.num_experts, batch)
          : 0.0;
  const double mla = double(batch) * context * c.plan.num_mla_layers * c.mla_cache_dim() * 2;
  const double kda_state = double(c.kda_num_heads) * c.kda_head_dim * c.kda_head_dim * 4;
  const double conv = 3.0 * (c.short_conv_kernel_size - 1) * c.kda_dim() * 2;
  const double kda = double(batch) * c.plan.num_kda_layers * 2 * (kda_state + conv);
  return fixed + experts * touched + mla + kda;
}

// The FLOPs of prefilling `seqs` prompts of `len` tokens: 2 per weight the token activates
// (every weight but the embedding, the lm_head and the unselected experts), the lm_head on one
// row per prompt, and causal MLA attention (QK^T over qk_nope + qk_rope, PV over v, half the
// L x L square). For the real config and one 4K prompt: 23.6 TFLOP, ROOFLINE.md's 30 ms at
// 790 TFLOP/s.
double prefill_floor_flops(const ModelConfig& c, const WeightStore& layout, int seqs, int len) {
  double active = 0, lm_head = 0;
  const double expert_share =
      c.num_experts > 0 ? double(c.num_experts_per_token) / c.num_experts : 0.0;
  for (const TensorInfo& t : layout.tensors()) {
    double n = 1;
    for (int64_t d : t.shape) n *= double(d);
    if (t.name == "lm_head.weight")
      lm_head = n;
    else if (t.name.find(".block_sparse_moe.experts.") != std::string::npos)
      active += n * expert_share;
    else if (t.name != "model.embed_tokens.weight")
      active += n;
  }
  const double attn = c.plan.num_mla_layers * 2.0 * c.num_attention_heads *
                      (c.mla_q_head_dim() + c.v_head_dim) * double(len) * len / 2;
  return seqs * (2.0 * len * active + 2.0 * lm_head + attn);
}

std::vector<int> parse_list(const std::string& s) {
  std::vector<int> out;
  size_t p = 0;
  while (p < s.size()) {
    const size_t q = s.find(',', p);
    out.push_back(std::atoi(s.substr(p, q - p).c_str()));
    if (q == std::string::npos) break;
    p = q + 1;
  }
  return out;
}

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

void check(cudaError_t e, const char* what) {
  KL_CHECK(e == cudaSuccess, "{}: {}", what, cudaGetErrorString(e));
}

// Device-to-device copy rate (bytes read + written per second) over 2 x 2 GiB.
double measure_copy_bandwidth() {
  const size_t bytes = size_t{2} << 30;
  void *a = nullptr, *b = nullptr;
  check(cudaMalloc(&a, bytes), "cudaMalloc");
  check(cudaMalloc(&b, bytes), "cudaMalloc");
  cudaEvent_t e0, e1;
  cudaEventCreate(&e0);
  cudaEventCreate(&e1);
  for (int i = 0; i < 3; ++i) cudaMemcpy(b, a, bytes, cudaMemcpyDeviceToDevice);
  std::vector<float> times;
  for (int i = 0; i < 10; ++i) {
    cudaEventRecord(e0);
    cudaMemcpyAsync(i % 2 ? a : b, i % 2 ? b : a, bytes, cudaMemcpyDeviceToDevice);
    cudaEventRecord(e1);
    cudaEventSynchronize(e1);
    float ms = 0;
    cudaEventElapsedTime(&ms, e0, e1);
    times.push_back(ms);
  }
  std::sort(times.begin(), times.end());
  cudaFree(a);
  cudaFree(b);
  return 2.0 * bytes / (times[times.size() / 2] * 1e-3);
}

// A large bf16 GEMM through the same cuBLASLt path as the model (m = n = k = 8192).
double measure_gemm_tflops() {
  const int64_t n = 8192;
  void *x = nullptr, *w = nullptr, *y = nullptr;
  check(cudaMalloc(&x, n * n * 2), "cudaMalloc");
  check(cudaMalloc(&w, n * n * 2), "cudaMalloc");
  check(cudaMalloc(&y, n * n * 2), "cudaMalloc");
  cudaMemset(x, 0, n * n * 2);
  cudaMemset(w, 0, n * n * 2);
  kernels::GemmRunner gemm;
  kernels::LinearCudaParams<__nv_bfloat16> p;
  p.x = static_cast<const __nv_bfloat16*>(x);
  p.m = n;
  p.w = {w, DType::kBF16, n, n};
  p.out = static_cast<__nv_bfloat16*>(y);
  cudaEvent_t e0, e1;
  cudaEventCreate(&e0);
  cudaEventCreate(&e1);
  for (int i = 0; i < 3; ++i) gemm.linear(p, nullptr);
  std::vector<float> times;
  for (int i = 0; i < 10; ++i) {
    cudaEventRecord(e0);
    gemm.linear(p, nullptr);
    cudaEventRecord(e1);
    cudaEventSynchronize(e1);
    float ms = 0;
    cudaEventElapsedTime(&ms, e0, e1);
    times.push_back(ms);
  }
  std::sort(times.begin(), times.end());
  cudaFree(x);
  cudaFree(w);
  cudaFree(y);
  return 2.0 * n * n * n / (times[times.size() / 2] * 1e-3) / 1e12;
}

struct Seq {
  int64_t id;
  int32_t block;
  std::vector<int32_t> pages;
  int64_t computed;
};

SeqStep decode_step(const Seq& q) {
  SeqStep s;
  s.seq_id = q.id;
  s.token_ids = {static_cast<int32_t>(1 + q.id % 1000)};
  s.num_computed_tokens = q.computed;
  s.page_table = q.pages;
  s.state_block = q.block;
  s.logits = LogitsMode::kLast;
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  std::string config_path;
  int context = 4096, steps = 20, prefill_len = 4096;
  double mem = 0.92;
  int64_t max_batched = 16384;
  std::vector<int> batches = {1, 8, 64, 256}, prefill_seqs = {1, 8};
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i], v = argv[i + 1];
    if (a == "--config")
      config_path = v;
    else if (a == "--context")
      context = std::atoi(v.c_str());
    else if (a == "--steps")
      steps = std::atoi(v.c_str());
    else if (a == "--batches")
      batches = parse_list(v);
    else if (a == "--prefill")
      prefill_len = std::atoi(v.c_str());
    else if (a == "--prefill-seqs")
      prefill_seqs = parse_list(v);
    else if (a == "--mem")
      mem = std::atof(v.c_str());
    else if (a == "--max-batched")
      max_batched = std::atoll(v.c_str());
    else {
      std::fprintf(stderr, "unknown option %s\n", a.c_str());
      return 2;
    }
  }
  try {
    KL_CHECK(!config_path.empty(), "--config CONFIG.json is required");
    const ModelConfig config = load_model_config(config_path);
    const double copy_bw = measure_copy_bandwidth();
    const double gemm_tflops = measure_gemm_tflops();
    fmt::print(
        "ceilings: device copy {:.2f} TB/s (read+write), cuBLAS bf16 GEMM 8192^3 {:.0f} TFLOP/s\n",
        copy_bw / 1e12, gemm_tflops);

    const WeightStore layout = WeightStore::dummy_layout(config, 1);
    const ModelWeights weights = bind_model_weights(config, layout);
    const int max_batch = *std::max_element(batches.begin(), batches.end());
    const int max_prefill = *std::max_element(prefill_seqs.begin(), prefill_seqs.end());
    CudaExecutorOptions o;
    o.activation = DType::kBF16;
    o.gpu_memory_utilization = mem;
    o.max_num_seqs = std::max(max_batch, max_prefill);
    o.max_num_batched_tokens = max_batched;
    o.dummy_layout = &layout;
    o.max_model_len = context + steps + 64;  // decode steps run as CUDA graphs
    const auto t_load = Clock::now();
    CudaExecutor exec(config, weights, o);
    fmt::print("weights generated on the GPU in {:.1f} s; {}\n", ms_since(t_load) / 1e3,
               exec.memory_plan().describe());

    // Decode on synthetic caches: every sequence already holds `context` tokens (the pages and
    // state blocks hold whatever they hold; the arithmetic and bytes are the same).
    const int64_t pages_per_seq = (context + steps + 8 + kPageSize - 1) / kPageSize;
    for (int b : batches) {
      if (b * pages_per_seq > exec.num_pages() || b > exec.num_state_blocks()) {
        fmt::print("decode batch {}: skipped ({} pages / {} blocks needed, {} / {} exist)\n", b,
                   b * pages_per_seq, b, exec.num_pages(), exec.num_state_blocks());
        continue;
      }
      std::vector<Seq> seqs;
      for (int i = 0; i < b; ++i) {
        Seq q{i, i, {}, context};
        for (int64_t p = 0; p < pages_per_seq; ++p)
          q.pages.push_back(static_cast<int32_t>(i * pages_per_seq + p));
        seqs.push_back(q);
      }
      auto run_steps = [&](int n) {
        for (int k = 0; k < n; ++k) {
          StepPlan plan;
          plan.step_id = k;
          for (Seq& q : seqs) plan.seqs.push_back(decode_step(q));
          const StepResult r = exec.run_now(plan);
          KL_CHECK(r.ok, "decode step failed: {}", r.error);
          for (Seq& q : seqs) ++q.computed;
        }
      };
      run_steps(3);  // warm-up
      const auto t0 = Clock::now();
      run_steps(steps);
      const double tpot = ms_since(t0) / steps;
      // The same steps launched eagerly, then the shares (from eager steps: CUDA events cannot be
      // captured in a graph).
      exec.set_cuda_graphs(false);
      const auto t1 = Clock::now();
      run_steps(steps);
      const double tpot_eager = ms_since(t1) / steps;
      exec.set_profile(true);
      exec.profile_report(/*reset=*/true);
      run_steps(5);
      exec.set_profile(false);
      exec.set_cuda_graphs(true);
      const double floor = decode_floor_bytes(config, layout, b, context) / copy_bw * 1e3;
      fmt::print(
          "decode batch {:3d} ctx {}: TPOT {:.2f} ms with CUDA graphs ({:.2f} ms eager), "
          "{:.0f} tok/s, floor {:.2f} ms, {:.1f}% of floor\n  step share (eager): {}\n",
          b, context, tpot, tpot_eager, b / tpot * 1e3, floor, 100.0 * floor / tpot,
          exec.profile_report(/*reset=*/true));
    }

    // Prefill: P prompts of prefill_len tokens from fresh state blocks, packed into steps of at
    // most max_batched tokens; TTFT = until the last prompt's first token.
    for (int P : prefill_seqs) {
      const int64_t pps = (prefill_len + kPageSize - 1) / kPageSize;
      if (P * pps > exec.num_pages() || P > exec.num_state_blocks()) continue;
      std::vector<int64_t> done(P, 0);
      auto run_prefill = [&] {
        std::fill(done.begin(), done.end(), 0);
        for (uint64_t step = 0;; ++step) {
          StepPlan plan;
          plan.step_id = step;
          int64_t budget = max_batched;
          for (int i = 0; i < P && budget > 0; ++i) {
            if (done[i] == prefill_len) continue;
            const int64_t n = std::min<int64_t>(budget, prefill_len - done[i]);
            SeqStep s;
            s.seq_id = 1000 + i;
            s.token_ids.assign(n, 7);
            s.num_computed_tokens = done[i];
            s.reset_state = done[i] == 0;
            s.state_block = i;
            for (int64_t p = 0; p < pps; ++p)
              s.page_table.push_back(static_cast<int32_t>(i * pps + p));
            s.logits = done[i] + n == prefill_len ? LogitsMode::kLast : LogitsMode::kNone;
            plan.seqs.push_back(s);
            done[i] += n;
            budget -= n;
          }
          if (plan.seqs.empty()) break;
          const StepResult r = exec.run_now(plan);
          KL_CHECK(r.ok, "prefill step failed: {}", r.error);
        }
      };
      run_prefill();  // warm-up
      const auto t0 = Clock::now();
      run_prefill();
      const double ms = ms_since(t0);
      const double floor = prefill_floor_flops(config, layout, P, prefill_len) / gemm_tflops / 1e9;
      fmt::print(
          "prefill {} x {}: TTFT {:.1f} ms, {:.0f} tok/s, compute floor {:.1f} ms, "
          "{:.1f}% of floor\n",
          P, prefill_len, ms, P * prefill_len / ms * 1e3, floor, 100.0 * floor / ms);
    }
  } catch (const Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
