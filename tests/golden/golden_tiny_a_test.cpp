// The CPU executor against HF's reference logits (fp32 rule of ../shared/golden/README.md), and
// its invariance (principle 11): batched, chunked and interleaved schedules must be bitwise equal
// to each sequence running alone.
#include <catch2/catch.hpp>

#include <fmt/format.h>
#include <cstring>

#include "engine/exec/cpu_executor.h"
#include "tests/golden/golden_case.h"
#include "tests/golden/golden_runner.h"
#include "tests/support/test_support.h"

using namespace kl;
using namespace kl::test;

namespace {

// The fp32 rule: every logits tensor within 1e-4 relative L2 (fp32 noise is ~1e-6).
constexpr double kFp32Tol = 1e-4;
constexpr int64_t kPages = 160;

std::unique_ptr<CpuExecutor> make_executor(const GoldenCase& gc, int64_t num_blocks) {
  return std::make_unique<CpuExecutor>(gc.config, gc.weights, kPages, num_blocks);
}

std::vector<ScriptedSeq> script_for(const GoldenCase& gc) {
  std::vector<ScriptedSeq> seqs;
  for (const auto& p : gc.prompts)
    seqs.push_back({p.input_ids, static_cast<int>(p.greedy_ids.size()), 0, {}});
  return seqs;
}

// Each prompt alone, whole prefill in one chunk.
std::vector<SeqRecord> run_alone(const GoldenCase& gc) {
  std::vector<SeqRecord> out;
  for (const auto& s : script_for(gc)) {
    auto exec = make_executor(gc, 1);
    out.push_back(run_scripted(*exec, gc.config.vocab_size, {s}, 7)[0]);
  }
  return out;
}

void check_against_reference(const GoldenCase& gc, const std::vector<SeqRecord>& recs) {
  REQUIRE(recs.size() == gc.prompts.size());
  for (size_t i = 0; i < recs.size(); ++i) {
    const GoldenPrompt& p = gc.prompts[i];
    const SeqRecord& r = recs[i];
    INFO(gc.name << " " << p.name << " (" << p.input_ids.size() << " tokens)");
    if (!p.prefill_logits.empty()) {
      REQUIRE(r.prefill_logits.size() == p.prefill_logits.size());
      const double e = rel_l2(r.prefill_logits, p.prefill_logits);
      WARN(fmt::format("{} {} prefill logits rel err {:.3e}", gc.name, p.name, e));
      CHECK(e <= kFp32Tol);
    }
    REQUIRE(r.decode_logits.size() == p.decode_logits.size());
    const double e = rel_l2(r.decode_logits, p.decode_logits);
    WARN(fmt::format("{} {} decode logits rel err {:.3e}", gc.name, p.name, e));
    CHECK(e <= kFp32Tol);
    CHECK(r.generated == p.greedy_ids);
  }
}

bool bitwise_equal(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

void check_bitwise(const std::vector<SeqRecord>& got, const std::vector<SeqRecord>& alone) {
  REQUIRE(got.size() == alone.size());
  for (size_t i = 0; i < got.size(); ++i) {
    INFO("prompt p" << i);
    CHECK(bitwise_equal(got[i].prefill_logits, alone[i].prefill_logits));
    CHECK(bitwise_equal(got[i].decode_logits, alone[i].decode_logits));
    CHECK(got[i].generated == alone[i].generated);
  }
}

}  // namespace

TEST_CASE("golden: every case, each prompt alone, matches the reference (fp32 rule)") {
  const auto dirs = golden_case_dirs();
  REQUIRE(!dirs.empty());
  for (const auto& dir : dirs) {
    GoldenCase gc = load_golden_case(dir);
    check_against_reference(gc, run_alone(gc));
  }
}

TEST_CASE("golden: all prompts in one batch are bitwise equal to each alone") {
  for (const auto& dir : golden_case_dirs()) {
    GoldenCase gc = load_golden_case(dir);
    const auto alone = run_alone(gc);
    auto exec = make_executor(gc, static_cast<int64_t>(gc.prompts.size()));
    RunStats stats;
    const auto batched = run_scripted(*exec, gc.config.vocab_size, script_for(gc), 11, &stats);
    CHECK(stats.max_seqs_in_step == static_cast<int>(gc.prompts.size()));
    check_bitwise(batched, alone);
    check_against_reference(gc, batched);
  }
}

TEST_CASE("golden: prefill split into chunks at varied points is bitwise equal to alone") {
  const std::vector<std::vector<int64_t>> splits = {
      {1}, {63}, {64}, {65}, {1, 63, 64, 65}, {7, 130}, {200, 3}, {17, 1, 29}};
  for (const auto& dir : golden_case_dirs()) {
    GoldenCase gc = load_golden_case(dir);
    const auto alone = run_alone(gc);
    for (const auto& split : splits) {
      INFO(gc.name << " chunk sizes " << fmt::format("{}", fmt::join(split, ",")));
      auto seqs = script_for(gc);
      for (auto& s : seqs) s.chunk_sizes = split;
      auto exec = make_executor(gc, static_cast<int64_t>(seqs.size()));
      check_bitwise(run_scripted(*exec, gc.config.vocab_size, seqs, 13), alone);
    }
  }
}

TEST_CASE("golden: decodes interleaved with other prompts' prefill chunks are bitwise equal") {
  for (const auto& dir : golden_case_dirs()) {
    GoldenCase gc = load_golden_case(dir);
    const auto alone = run_alone(gc);
    auto seqs = script_for(gc);
    // Staggered arrivals with small chunks: short prompts are decoding while long ones prefill.
    for (size_t i = 0; i < seqs.size(); ++i) {
      seqs[i].arrival_step = static_cast<int>(3 * i);
      seqs[i].chunk_sizes = {static_cast<int64_t>(5 + 17 * i), 64};
    }
    auto exec = make_executor(gc, static_cast<int64_t>(seqs.size()));
    RunStats stats;
    check_bitwise(run_scripted(*exec, gc.config.vocab_size, seqs, 17, &stats), alone);
    CHECK(stats.max_seqs_in_step >= 3);
  }
}

TEST_CASE("golden: per-layer activations of the activations prompt (tiny-a p4)") {
  int checked = 0;
  for (const auto& dir : golden_case_dirs()) {
    GoldenCase gc = load_golden_case(dir);
    if (gc.activations.empty()) continue;
    const GoldenPrompt* p = nullptr;
    for (const auto& q : gc.prompts)
      if (q.name == gc.activations_prompt) p = &q;
    REQUIRE(p != nullptr);
    auto exec = make_executor(gc, 1);
    StepPlan plan;
    SeqStep s;
    s.token_ids = p->input_ids;
    s.state_block = 0;
    s.reset_state = true;
    s.logits = LogitsMode::kLast;
    for (int64_t i = 0; i * kPageSize < static_cast<int64_t>(p->input_ids.size()); ++i)
      s.page_table.push_back(static_cast<int32_t>(i));
    plan.seqs.push_back(s);
    std::map<std::string, std::vector<float>> ours;
    std::vector<std::string> order;
    auto r = exec->run_now(
        plan, [&](const std::string& name, const float* d, int64_t rows, int64_t cols) {
          ours[name].assign(d, d + rows * cols);
          order.push_back(name);
        });
    REQUIRE(r.ok);
    // Walk in forward order so a failure names the first diverging activation.
    for (const auto& name : order) {
      auto it = gc.activations.find(name);
      REQUIRE(it != gc.activations.end());
      const double e = rel_l2(ours[name], it->second);
      INFO(gc.name << " " << gc.activations_prompt << " first diverging activation: " << name
                   << " rel err " << e);
      REQUIRE(e <= kFp32Tol);
    }
    CHECK(order.size() == gc.activations.size());
    ++checked;
  }
  CHECK(checked >= 1);
}
