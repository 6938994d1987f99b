// Host overhead of the engine (a benchmark, not a test): scheduler + engine loop time per step
// with a no-op executor, at a given number of running sequences, so that host cost is known
// before the GPU arrives. Target (issue 4): under 100 us per step at 256 sequences.
//   kl_engine_overhead_bench [--seqs N] [--steps S]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>

#include "engine/api/engine.h"
#include "engine/exec/fake_executor.h"
#include "engine/sched/scheduler.h"

using namespace kl;
using Clock = std::chrono::steady_clock;

int main(int argc, char** argv) {
  int num_seqs = 256, steps = 2000;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    if (a == "--seqs") num_seqs = std::atoi(argv[i + 1]);
    if (a == "--steps") steps = std::atoi(argv[i + 1]);
  }
  const int prompt = 128;
  const int64_t pages = int64_t{num_seqs} * ((prompt + steps + 64) / 64 + 1);

  // 1. Scheduler alone: schedule() + update() per decode step at num_seqs running sequences.
  {
    SchedulerConfig c;
    c.max_num_seqs = num_seqs;
    c.max_num_batched_tokens = int64_t{num_seqs} * prompt;
    c.max_model_len = prompt + steps + 8;
    Scheduler s(c, pages, num_seqs);
    auto p = std::make_shared<SamplingParams>();
    p->max_tokens = steps + 4;
    for (int i = 0; i < num_seqs; ++i) s.add_request(i, std::vector<int32_t>(prompt, 5), p, i);
    auto run_step = [&] {
      StepPlan plan = s.schedule();
      StepResult r;
      r.step_id = plan.step_id;
      for (const SeqStep& st : plan.seqs)
        if (st.logits != LogitsMode::kNone) {
          SeqOutput o;
          o.seq_id = st.seq_id;
          o.sampled_token = 7;
          r.outputs.push_back(std::move(o));
        }
      s.update(plan, r);
    };
    run_step();  // prefill
    const auto t0 = Clock::now();
    for (int i = 0; i < steps; ++i) run_step();
    const double us = std::chrono::duration<double, std::micro>(Clock::now() - t0).count() / steps;
    std::printf(
        "scheduler: %d running sequences, %d decode steps: %.1f us/step (schedule + update)\n",
        num_seqs, steps, us);
  }

  // 2. Whole engine loop (plan, submit, collect, update, deliver to streams) with a no-op executor.
  {
    EngineConfig c;
    c.vocab_size = 1000;
    c.max_num_waiting = num_seqs;
    c.scheduler.max_num_seqs = num_seqs;
    c.scheduler.max_num_batched_tokens = int64_t{num_seqs} * prompt;
    c.scheduler.max_model_len = prompt + steps + 8;
    auto exec = std::make_unique<FakeExecutor>(pages, num_seqs, std::chrono::microseconds(0));
    Engine engine(c, std::move(exec));
    std::vector<std::shared_ptr<RequestStream>> streams;
    const auto t0 = Clock::now();
    for (int i = 0; i < num_seqs; ++i) {
      GenerateRequest r;
      r.prompt.assign(prompt, 5);
      r.params.max_tokens = steps;
      r.params.temperature = 0.f;
      streams.push_back(engine.submit(std::move(r)).stream);
    }
    int64_t tokens = 0;
    for (auto& s : streams) {
      while (!s->done()) {
        for (auto& o : s->drain()) tokens += o.token >= 0;
        if (!s->done()) std::this_thread::sleep_for(std::chrono::microseconds(200));
      }
    }
    const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
    const EngineStats st = engine.stats();
    std::printf(
        "engine loop: %d sequences x %d tokens, %lld steps in %.3f s: %.1f us/step, %.0f "
        "tokens/s\n",
        num_seqs, steps, static_cast<long long>(st.num_steps), secs, 1e6 * secs / st.num_steps,
        tokens / secs);
  }
  return 0;
}
