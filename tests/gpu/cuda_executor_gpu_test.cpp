// The CUDA executor's behaviour beyond the numbers: the memory plan from
// --gpu-memory-utilization, a bad plan failing one step only, and any CUDA error being fatal
// (every later step fails, the engine fails its requests and reports the error once).
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>

#include "engine/api/engine.h"
#include "engine/exec/cuda/cuda_executor.h"
#include "tests/golden/golden_case.h"
#include "tests/support/test_support.h"

using namespace kl;
using namespace kl::test;

namespace {

GoldenCase tiny_case() {
  const auto dirs = golden_case_dirs();
  REQUIRE(!dirs.empty());
  return load_golden_case(dirs.front());
}

StepPlan one_prefill(const std::vector<int32_t>& tokens, int32_t block, uint64_t step) {
  StepPlan plan;
  plan.step_id = step;
  SeqStep s;
  s.seq_id = 1;
  s.token_ids = tokens;
  s.state_block = block;
  s.reset_state = true;
  s.logits = LogitsMode::kLast;
  for (size_t i = 0; i * 64 < tokens.size(); ++i) s.page_table.push_back(static_cast<int32_t>(i));
  plan.seqs.push_back(s);
  return plan;
}

}  // namespace

TEST_CASE("cuda executor: memory plan from --gpu-memory-utilization", "[gpu][executor]") {
  GoldenCase gc = tiny_case();
  CudaExecutorOptions o;
  o.activation = DType::kBF16;
  o.gpu_memory_utilization = 0.3;
  o.max_num_seqs = 8;
  o.max_num_batched_tokens = 1024;
  CudaExecutor exec(gc.config, gc.weights, o);
  const GpuMemoryPlan& p = exec.memory_plan();
  WARN(p.describe());
  CHECK(p.num_pages > 0);
  CHECK(p.num_state_blocks == 8);  // every admissible sequence gets a block
  CHECK(p.weights_bytes > 0);
  CHECK(p.workspace_bytes > 0);
  // Everything we hold fits the budget; what is left of the budget is less than one page.
  const int64_t used = p.weights_bytes + p.workspace_bytes + p.other_bytes + p.cache_bytes;
  CHECK(used <= p.budget_bytes);
  CHECK(exec.num_pages() == p.num_pages);
  auto r = exec.run_now(one_prefill(gc.prompts[1].input_ids, 0, 1));
  CHECK(r.ok);
}

TEST_CASE("cuda executor: a budget too small for the weights is refused with a clear message",
          "[gpu][executor]") {
  GoldenCase gc = tiny_case();
  CudaExecutorOptions o;
  o.gpu_memory_utilization = 1e-6;
  CHECK_THROWS_WITH(CudaExecutor(gc.config, gc.weights, o),
                    Catch::Contains("--gpu-memory-utilization"));
}

TEST_CASE("cuda executor: a bad plan fails its step only", "[gpu][executor]") {
  GoldenCase gc = tiny_case();
  CudaExecutorOptions o;
  o.num_pages = 16;
  o.num_state_blocks = 2;
  CudaExecutor exec(gc.config, gc.weights, o);
  auto bad = one_prefill({1, 2, static_cast<int32_t>(gc.config.vocab_size)}, 0, 1);
  auto r = exec.run_now(bad);
  CHECK_FALSE(r.ok);
  CHECK_FALSE(r.fatal);
  CHECK_THAT(r.error, Catch::Contains("outside the vocabulary"));
  auto out_of_range = one_prefill({1, 2}, 5, 2);
  r = exec.run_now(out_of_range);
  CHECK_FALSE(r.ok);
  CHECK_FALSE(r.fatal);
  r = exec.run_now(one_prefill(gc.prompts[0].input_ids, 1, 3));
  CHECK(r.ok);
  REQUIRE(r.outputs.size() == 1);
  CHECK(r.outputs[0].sampled_token == gc.prompts[0].greedy_ids[0]);
}

TEST_CASE("cuda executor: a device fault is fatal for this and every later step",
          "[gpu][executor][fatal]") {
  GoldenCase gc = tiny_case();
  CudaExecutorOptions o;
  o.num_pages = 16;
  o.num_state_blocks = 2;
  o.inject_fault_at_step = 2;
  CudaExecutor exec(gc.config, gc.weights, o);
  auto r = exec.run_now(one_prefill(gc.prompts[1].input_ids, 0, 1));
  CHECK(r.ok);
  r = exec.run_now(one_prefill(gc.prompts[1].input_ids, 0, 2));
  CHECK_FALSE(r.ok);
  CHECK(r.fatal);
  CHECK_THAT(r.error, Catch::Contains("CUDA error"));
  const std::string first = r.error;
  r = exec.run_now(one_prefill(gc.prompts[1].input_ids, 1, 3));
  CHECK(r.fatal);
  CHECK(r.error == first);
}

TEST_CASE("cuda executor: the engine fails in-flight requests on a fatal error",
          "[gpu][executor][fatal]") {
  GoldenCase gc = tiny_case();
  CudaExecutorOptions o;
  o.num_pages = 32;
  o.num_state_blocks = 4;
  o.inject_fault_at_step = 3;
  EngineConfig ec;
  ec.vocab_size = gc.config.vocab_size;
  ec.scheduler.max_num_seqs = 4;
  ec.scheduler.max_num_batched_tokens = 512;
  ec.scheduler.max_model_len = 1024;
  std::atomic<int> fatal_calls{0};
  ec.on_fatal = [&](const std::string&) { ++fatal_calls; };
  Engine engine(ec, std::make_unique<CudaExecutor>(gc.config, gc.weights, o));
  GenerateRequest req;
  req.prompt = gc.prompts[2].input_ids;
  req.params.max_tokens = 50;
  req.params.ignore_eos = true;
  auto sub = engine.submit(req);
  REQUIRE(sub.status == SubmitStatus::kOk);
  std::string error;
  for (int i = 0; i < 200 && error.empty(); ++i) {
    auto out = sub.stream->next(std::chrono::milliseconds(100));
    if (out && out->finish == FinishReason::kError) error = out->error;
  }
  CHECK_THAT(error, Catch::Contains("fatal error"));
  CHECK(fatal_calls == 1);
  CHECK_THAT(engine.fatal_error(), Catch::Contains("CUDA error"));
  auto again = engine.submit(req);
  CHECK(again.status == SubmitStatus::kShuttingDown);
  CHECK_THAT(again.error, Catch::Contains("fatal error"));
}
