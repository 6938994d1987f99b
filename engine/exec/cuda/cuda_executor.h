// The CUDA executor: runs StepPlans on one Hopper GPU with the CUDA kernels, on the worker thread
// of ThreadedExecutor (submit() returns at once, collect() yields results in order, principle
// 10). Device memory is planned at construction from --gpu-memory-utilization: weights, then
// activations and kernel scratch, then whatever the budget leaves becomes MLA pages and KDA state
// blocks. Any CUDA error is fatal: the failing step and every later one report
// StepResult::fatal, and the process is expected to exit (no silent continuation after a sticky
// error).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "engine/exec/seq_registry.h"
#include "engine/exec/threaded_executor.h"
#include "models/model_config.h"
#include "models/model_weights.h"

namespace kl {

class WeightStore;

struct CudaExecutorOptions {
  int device = 0;
  DType activation = DType::kBF16;
  double gpu_memory_utilization = 0.9;  // of the GPU's total memory, for everything we allocate
  int64_t max_num_seqs = 256;
  int64_t max_num_batched_tokens = 8192;  // token rows per step
  // Explicit cache sizes (tests); 0 = from the memory plan.
  int64_t num_pages = 0;
  int64_t num_state_blocks = 0;
  int32_t max_logprobs = 20;
  // Test hook: enqueue a trapping kernel in this step (counted from 1; 0 = never).
  int64_t inject_fault_at_step = 0;
  // A layout-only dummy store (WeightStore::dummy_layout) that the host weights view: the
  // weights are generated on the GPU.
  const WeightStore* dummy_layout = nullptr;
  // Time every kernel class with CUDA events (benchmarks; adds a little overhead per op).
  bool profile = false;
  // Run decode-only steps as CUDA graphs, one per padded batch size (needs max_model_len, which
  // bounds the page tables a graph is captured with). vLLM's --enforce-eager turns this off.
  bool cuda_graphs = true;
  int64_t max_model_len = 0;
};

struct GpuMemoryPlan {
  std::string gpu;  // name and total memory
  int64_t total_bytes = 0;
  int64_t budget_bytes = 0;  // utilization * total
  int64_t weights_bytes = 0;
  int64_t workspace_bytes = 0;  // activations and kernel scratch
  int64_t other_bytes = 0;      // CUDA context, cuBLAS, and anything else already in use
  int64_t cache_bytes = 0;
  int64_t num_pages = 0;
  int64_t num_state_blocks = 0;
  std::string describe() const;  // one line for the startup log
};

class CudaExecutor final : public ThreadedExecutor {
 public:
  // `host` views must stay valid during construction only (the weights are copied to the GPU).
  // `progress` receives the fraction of the weights uploaded. Throws kl::Error for a missing or
  // non-Hopper GPU and for a budget that does not fit.
  CudaExecutor(const ModelConfig& config, const ModelWeights& host,
               const CudaExecutorOptions& options,
               const std::function<void(double)>& progress = {});
  ~CudaExecutor() override;

  int64_t num_pages() const override;
  int64_t num_state_blocks() const override;
  const GpuMemoryPlan& memory_plan() const;
  // The per-kernel-class times of the steps run so far (options.profile); reset with reset=true.
  std::string profile_report(bool reset = false);
  // Turns the kernel-class timing on or off (between steps; not with steps in flight).
  void set_profile(bool on);
  // Seconds per kernel class, summed over the profiled steps since the last reset.
  std::vector<std::pair<std::string, double>> profile_ms_per_step() const;

  // Runs a plan synchronously on the calling thread (tests); must not be mixed with in-flight
  // submit()s.
  StepResult run_now(const StepPlan& plan);

  // Decode steps run by replaying a captured CUDA graph so far.
  int64_t graph_replays() const;
  // Turns the use of CUDA graphs off or back on (when built with them; between steps). Profiling
  // needs eager steps: events cannot be captured.
  void set_cuda_graphs(bool on);

  struct State;  // internal (executor_state.h)

 private:
  StepResult run_step(StepPlan plan, Clock::time_point) override;
  StepResult execute(StepPlan plan);

  std::unique_ptr<State> s_;
};

}  // namespace kl
