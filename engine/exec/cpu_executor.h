// The CPU reference executor: runs StepPlans with the fp32 reference kernels on a worker thread
// it owns (submit() returns at once, collect() yields results in order, principle 10).
#pragma once

#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <unordered_map>

#include "engine/exec/cpu_forward.h"
#include "engine/exec/executor.h"

namespace kl {

class CpuExecutor final : public Executor {
 public:
  // `weights` views must outlive the executor (they point into the caller's WeightStore).
  CpuExecutor(const ModelConfig& config, ModelWeights weights, int64_t num_pages,
              int64_t num_state_blocks);
  ~CpuExecutor() override;
  CpuExecutor(const CpuExecutor&) = delete;
  CpuExecutor& operator=(const CpuExecutor&) = delete;

  void submit(StepPlan plan) override;
  StepResult collect() override;
  int64_t num_pages() const override { return caches_.num_pages(); }
  int64_t num_state_blocks() const override { return caches_.num_state_blocks(); }

  // Runs a plan synchronously on the calling thread (tests, benchmarks); must not be mixed with
  // in-flight submit()s. `sink` receives intermediate activations.
  StepResult run_now(const StepPlan& plan, const ActivationSink& sink = {});

 private:
  // A registered sequence: how it samples and what it has generated (penalties, positions).
  struct SeqState {
    SeqSampling reg;
    std::vector<int32_t> outputs;
  };

  void worker_loop();
  StepResult execute(StepPlan plan, const ActivationSink& sink);
  void sample(const SeqStep& step, SeqOutput& out);

  ModelConfig config_;
  ModelWeights weights_;
  CpuCaches caches_;
  // Token each sequence sampled in its latest step (resolves kPrevSampledToken).
  std::unordered_map<int64_t, int32_t> last_sampled_;
  std::unordered_map<int64_t, SeqState> seq_states_;

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<StepPlan> pending_;
  std::deque<StepResult> done_;
  bool stop_ = false;
  std::thread worker_;  // last member: starts after everything it uses exists
};

}  // namespace kl
