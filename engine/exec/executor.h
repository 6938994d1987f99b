// The executor interface: runs StepPlans on some backend (CPU reference, CUDA). Asynchronous by
// contract (principle 10): submit() returns at once; collect() returns results in submit order.
#pragma once

#include "engine/exec/step_plan.h"

namespace kl {

class Executor {
 public:
  virtual ~Executor() = default;
  // Queues a step. A plan may name kPrevSampledToken for a sequence sampled by an earlier step.
  virtual void submit(StepPlan plan) = 0;
  // Blocks until the oldest submitted step finishes and returns its result.
  virtual StepResult collect() = 0;
  // Capacity the executor was built with.
  virtual int64_t num_pages() const = 0;
  virtual int64_t num_state_blocks() const = 0;
};

}  // namespace kl
