// The CPU reference executor: runs StepPlans with the fp32 reference kernels on the worker thread
// of ThreadedExecutor (submit() returns at once, collect() yields results in order, principle 10).
#pragma once

#include "engine/exec/cpu_forward.h"
#include "engine/exec/seq_registry.h"
#include "engine/exec/threaded_executor.h"

namespace kl {

class CpuExecutor final : public ThreadedExecutor {
 public:
  // `weights` views must outlive the executor (they point into the caller's WeightStore).
  CpuExecutor(const ModelConfig& config, ModelWeights weights, int64_t num_pages,
              int64_t num_state_blocks);
  ~CpuExecutor() override;
  CpuExecutor(const CpuExecutor&) = delete;
  CpuExecutor& operator=(const CpuExecutor&) = delete;

  int64_t num_pages() const override { return caches_.num_pages(); }
  int64_t num_state_blocks() const override { return caches_.num_state_blocks(); }

  // Runs a plan synchronously on the calling thread (tests, benchmarks); must not be mixed with
  // in-flight submit()s. `sink` receives intermediate activations.
  StepResult run_now(const StepPlan& plan, const ActivationSink& sink = {});

 private:
  StepResult run_step(StepPlan plan, Clock::time_point) override {
    return execute(std::move(plan), {});
  }
  StepResult execute(StepPlan plan, const ActivationSink& sink);
  void sample(const SeqStep& step, SeqOutput& out);

  ModelConfig config_;
  ModelWeights weights_;
  CpuCaches caches_;
  SeqRegistry registry_;
};

}  // namespace kl
