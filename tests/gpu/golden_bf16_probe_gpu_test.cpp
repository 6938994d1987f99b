// Diagnostic (hidden, tag [.][bf16probe]): where the bf16 CUDA path departs from the fp32 one on a
// golden prompt, layer by layer and position by position, without any hook in the forward pass.
// The prompt is followed by its reference greedy tokens (teacher forcing), so every position's
// inputs are the reference's. Each layer's state is read through a probe model: the first j
// layers, the final norm's weight set to 1 and an lm_head whose first `hidden` rows are the
// identity, so logits[:, :hidden] are the normalised residual stream after layer j ("out"); with
// layer j's FFN output zeroed they are the residual stream just before its FFN ("pre"), from which
// the router's input (post_attention_layernorm of it) follows exactly. Both schedules run: the
// prompt prefilled then one teacher-forced token per decode step, and everything in one prefill.
//   KL_PROBE_PROMPT=p4 (default) picks the prompt; KL_PROBE_OUT=dir writes the raw fp32 arrays
//   (<dtype>.<schedule>.<probe>.bin, [positions, cols]) and an index for offline analysis.
#include <catch2/catch.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <fstream>
#include <string>
#include <vector>

#include "engine/core/dtype.h"
#include "engine/exec/cuda/cuda_executor.h"
#include "engine/exec/kv_layout.h"
#include "tests/golden/golden_case.h"
#include "tests/support/test_support.h"

using namespace kl;
using namespace kl::test;

namespace {

// Owned host buffers behind the probe model's replaced views (a deque keeps them in place).
class Buffers {
 public:
  // A [rows, cols] tensor of `dtype` with value f(r, c).
  template <typename F>
  WeightView make(DType dtype, int64_t rows, int64_t cols, F f) {
    bufs_.emplace_back(static_cast<size_t>(rows * cols) * dtype_size(dtype));
    char* p = bufs_.back().data();
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t c = 0; c < cols; ++c) {
        const float v = f(r, c);
        if (dtype == DType::kF32) {
          std::memcpy(p + (r * cols + c) * 4, &v, 4);
        } else {
          REQUIRE(dtype == DType::kBF16);
          const uint16_t b = f32_to_bf16(v);
          std::memcpy(p + (r * cols + c) * 2, &b, 2);
        }
      }
    }
    return {p, dtype, rows, cols};
  }
  WeightView zeros_like(const WeightView& w) {
    return make(w.dtype, w.rows, w.cols, [](int64_t, int64_t) { return 0.f; });
  }

 private:
  std::deque<std::vector<char>> bufs_;
};

struct Probe {
  std::string name;  // "full", "out{j}", "pre{j}"
  ModelConfig config;
  ModelWeights weights;
};

Probe make_probe(const GoldenCase& gc, int depth, bool pre_ffn, Buffers& bufs) {
  Probe p{pre_ffn ? fmt::format("pre{}", depth - 1) : fmt::format("out{}", depth - 1), gc.config,
          gc.weights};
  p.config.plan.layers.resize(depth);
  const int64_t D = gc.config.hidden_size;
  p.weights.final_norm =
      bufs.make(gc.weights.final_norm.dtype, gc.weights.final_norm.rows, gc.weights.final_norm.cols,
                [](int64_t, int64_t) { return 1.f; });
  p.weights.lm_head = bufs.make(gc.weights.lm_head.dtype, gc.weights.lm_head.rows, D,
                                [](int64_t r, int64_t c) { return r == c ? 1.f : 0.f; });
  if (pre_ffn) {
    const LayerSpec& l = p.config.plan.layers.back();
    LayerWeights& lw = p.weights.layers[l.index];
    if (l.ffn == FfnKind::kDense) {
      lw.dense.down_proj = bufs.zeros_like(lw.dense.down_proj);
    } else {
      for (WeightView& w : lw.moe.w2) w = bufs.zeros_like(w);
      if (lw.moe.has_shared) lw.moe.shared.down_proj = bufs.zeros_like(lw.moe.shared.down_proj);
    }
  }
  return p;
}

// Logits [tokens, vocab] of every position of `tokens` (prompt_len of them prefilled at once, the
// rest one per step; prompt_len = tokens.size() prefills everything in one step).
std::vector<float> run_positions(const ModelConfig& config, const ModelWeights& weights, DType act,
                                 const std::vector<int32_t>& tokens, size_t prompt_len) {
  CudaExecutorOptions o;
  o.activation = act;
  o.num_pages = 16;
  o.num_state_blocks = 1;
  o.max_num_seqs = 4;
  o.max_num_batched_tokens = 512;
  CudaExecutor exec(config, weights, o);
  std::vector<float> logits;
  size_t pos = 0;
  for (uint64_t step = 0; pos < tokens.size(); ++step) {
    const size_t n = step == 0 ? prompt_len : 1;
    StepPlan plan;
    plan.step_id = step;
    plan.return_logits = true;
    SeqStep s;
    s.seq_id = 0;
    s.token_ids.assign(tokens.begin() + pos, tokens.begin() + pos + n);
    s.num_computed_tokens = static_cast<int64_t>(pos);
    s.state_block = 0;
    s.reset_state = step == 0;
    s.logits = LogitsMode::kAll;
    pos += n;
    for (int64_t i = 0; i * kPageSize < static_cast<int64_t>(pos); ++i)
      s.page_table.push_back(static_cast<int32_t>(i));
    plan.seqs.push_back(std::move(s));
    StepResult r = exec.run_now(plan);
    REQUIRE(r.ok);
    REQUIRE(r.outputs.size() == 1);
    logits.insert(logits.end(), r.outputs[0].logits.begin(), r.outputs[0].logits.end());
  }
  REQUIRE(logits.size() == tokens.size() * static_cast<size_t>(config.vocab_size));
  return logits;
}

// Columns [0, cols) of a [rows, stride] array.
std::vector<float> left_cols(const std::vector<float>& a, int64_t stride, int64_t cols) {
  const int64_t rows = static_cast<int64_t>(a.size()) / stride;
  std::vector<float> out(static_cast<size_t>(rows * cols));
  for (int64_t r = 0; r < rows; ++r)
    std::copy(a.begin() + r * stride, a.begin() + r * stride + cols, out.begin() + r * cols);
  return out;
}

// The MoE router's selection scores (sigmoid of fp32 logits, plus the correction bias) at every
// position, from a "pre" probe of that layer: the router reads post_attention_layernorm's output,
// which the forward rounds to the activation type after the weight multiply, as here.
std::vector<std::vector<double>> router_scores(const std::vector<float>& pre,
                                               const LayerWeights& lw, int64_t hidden, bool bf16) {
  const int64_t E = lw.moe.router.rows;
  std::vector<std::vector<double>> sel(pre.size() / hidden, std::vector<double>(E));
  std::vector<float> x(hidden);
  for (size_t t = 0; t < sel.size(); ++t) {
    for (int64_t c = 0; c < hidden; ++c) {
      const float v = pre[t * hidden + c] * lw.post_attention_layernorm.at(c);
      x[c] = bf16 ? round_to_bf16(v) : v;
    }
    for (int64_t e = 0; e < E; ++e) {
      double logit = 0;
      for (int64_t c = 0; c < hidden; ++c) logit += double(x[c]) * lw.moe.router.at(e, c);
      sel[t][e] = 1 / (1 + std::exp(-logit)) + lw.moe.correction_bias.at(e);
    }
  }
  return sel;
}

// Experts by descending selection score.
std::vector<int> ranked(const std::vector<double>& sel) {
  std::vector<int> ids(sel.size());
  for (size_t e = 0; e < ids.size(); ++e) ids[e] = static_cast<int>(e);
  std::stable_sort(ids.begin(), ids.end(), [&](int a, int b) { return sel[a] > sel[b]; });
  return ids;
}

int argmax(const float* row, int64_t n) {
  int best = 0;
  for (int64_t i = 1; i < n; ++i)
    if (row[i] > row[best]) best = static_cast<int>(i);
  return best;
}

}  // namespace

TEST_CASE("gpu golden probe: bf16 vs fp32 per layer and position (diagnostic)", "[.][bf16probe]") {
  std::string dir;
  for (const auto& d : golden_case_dirs())
    if (d.size() >= 6 && d.substr(d.size() - 6) == "tiny-a") dir = d;
  REQUIRE(!dir.empty());
  GoldenCase gc = load_golden_case(dir);
  const char* want = std::getenv("KL_PROBE_PROMPT");
  const std::string pname = want && *want ? want : "p4";
  const GoldenPrompt* p = nullptr;
  for (const auto& q : gc.prompts)
    if (q.name == pname) p = &q;
  REQUIRE(p != nullptr);
  const int64_t V = gc.config.vocab_size, D = gc.config.hidden_size;
  const size_t L = p->input_ids.size();
  std::vector<int32_t> tokens = p->input_ids;
  tokens.insert(tokens.end(), p->greedy_ids.begin(), p->greedy_ids.end() - 1);
  const size_t steps = p->greedy_ids.size();

  const char* out_env = std::getenv("KL_PROBE_OUT");
  const std::string out_dir = out_env ? out_env : "";
  std::string index;
  auto save = [&](const std::string& name, const std::vector<float>& a, int64_t cols) {
    if (out_dir.empty()) return;
    std::ofstream f(out_dir + "/" + name + ".bin", std::ios::binary);
    f.write(reinterpret_cast<const char*>(a.data()), static_cast<std::streamsize>(a.size() * 4));
    index += fmt::format("{} {} {}\n", name, a.size() / cols, cols);
  };

  Buffers bufs;
  std::vector<Probe> probes;
  probes.push_back({"full", gc.config, gc.weights});
  const int depth = static_cast<int>(gc.config.plan.layers.size());
  for (int j = 1; j <= depth; ++j) {
    probes.push_back(make_probe(gc, j, true, bufs));
    probes.push_back(make_probe(gc, j, false, bufs));
  }
  const std::pair<DType, const char*> dtypes[] = {{DType::kF32, "f32"}, {DType::kBF16, "bf16"}};
  const std::pair<size_t, const char*> scheds[] = {{L, "decode"}, {tokens.size(), "prefill"}};
  // results[dtype][sched][probe]
  std::vector<std::vector<std::vector<std::vector<float>>>> res(2);
  for (int di = 0; di < 2; ++di) {
    res[di].resize(2);
    for (int si = 0; si < 2; ++si) {
      for (const Probe& pr : probes) {
        auto lg = run_positions(pr.config, pr.weights, dtypes[di].first, tokens, scheds[si].first);
        if (pr.name != "full") lg = left_cols(lg, V, D);
        save(fmt::format("{}.{}.{}", dtypes[di].second, scheds[si].second, pr.name), lg,
             pr.name == "full" ? V : D);
        res[di][si].push_back(std::move(lg));
      }
    }
  }
  if (!out_dir.empty()) {
    std::ofstream f(out_dir + "/index.txt");
    f << fmt::format("prompt {} len {} steps {} vocab {} hidden {}\n", pname, L, steps, V, D)
      << index;
  }

  // Full model: per decode step, each run's error against the reference and its argmax.
  std::printf(
      "probe %s %s: decode step, ref id, ref margin | rel err and argmax: f32-decode, "
      "bf16-decode, bf16-prefill\n",
      gc.name.c_str(), pname.c_str());
  for (size_t k = 0; k < steps; ++k) {
    const float* ref = p->decode_logits.data() + k * V;
    const size_t row = (L - 1 + k) * V;
    std::string line = fmt::format("  step {:2d} ref {:4d} margin {:.3f} |", k, p->greedy_ids[k],
                                   p->greedy_margin[k]);
    for (auto [di, si] : {std::pair{0, 0}, {1, 0}, {1, 1}}) {
      const float* ours = res[di][si][0].data() + row;
      line += fmt::format(" {:.2e} {:4d}", rel_l2(ours, ref, V), argmax(ours, V));
    }
    std::printf("%s\n", line.c_str());
  }
  // Probes: bf16 against fp32 (ours), per layer, at the decode positions and over the prompt.
  for (int si = 0; si < 2; ++si) {
    std::string head = fmt::format("probe {} bf16/f32 rel err [{}] pos:", pname, scheds[si].second);
    for (size_t i = 1; i < probes.size(); ++i) head += fmt::format(" {:>8}", probes[i].name);
    std::printf("%s\n", head.c_str());
    for (size_t pos = L - 1; pos < tokens.size(); ++pos) {
      std::string line = fmt::format("  {:3d}:", pos);
      for (size_t i = 1; i < probes.size(); ++i)
        line += fmt::format(
            " {:.2e}", rel_l2(res[1][si][i].data() + pos * D, res[0][si][i].data() + pos * D, D));
      std::printf("%s\n", line.c_str());
    }
    std::string line = "  prompt:";
    for (size_t i = 1; i < probes.size(); ++i)
      line += fmt::format(" {:.2e}", rel_l2(res[1][si][i].data(), res[0][si][i].data(), L * D));
    std::printf("%s\n", line.c_str());
  }
  // Routing (ungrouped top-k only): every choice the bf16 run makes differently from the fp32 one,
  // with the fp32 gap between the last chosen and the first rejected expert and the bf16 change of
  // that gap; and the rms of that change over the positions (its typical size).
  const int K = gc.config.num_experts_per_token;
  for (int si = 0; si < 2 && gc.config.num_expert_group == 1; ++si) {
    for (int j = 0; j < depth; ++j) {
      const LayerSpec& l = gc.config.plan.layers[j];
      if (l.ffn != FfnKind::kMoe) continue;
      const LayerWeights& lw = gc.weights.layers[l.index];
      const size_t pre = 1 + 2 * static_cast<size_t>(j);  // probes: full, pre0, out0, pre1, ...
      const auto ref = router_scores(res[0][si][pre], lw, D, false);
      const auto ours = router_scores(res[1][si][pre], lw, D, true);
      double sum_sq = 0;
      int near = 0;
      std::string flips;
      for (size_t t = 0; t < ref.size(); ++t) {
        const auto r = ranked(ref[t]), o = ranked(ours[t]);
        const double gap = ref[t][r[K - 1]] - ref[t][r[K]];
        const double d = ours[t][r[K - 1]] - ours[t][r[K]] - gap;
        sum_sq += d * d;
        near += gap < 1e-2;
        std::vector<int> rs(r.begin(), r.begin() + K), os(o.begin(), o.begin() + K);
        std::sort(rs.begin(), rs.end());
        std::sort(os.begin(), os.end());
        if (rs != os) flips += fmt::format(" pos {} (gap {:.1e}, change {:+.1e});", t, gap, d);
      }
      std::printf(
          "probe %s routing [%s] layer %d: rms gap change %.1e, %d positions with gap < "
          "1e-2, flips:%s\n",
          pname.c_str(), scheds[si].second, l.index, std::sqrt(sum_sq / ref.size()), near,
          flips.empty() ? " none" : flips.c_str());
    }
  }
  std::fflush(stdout);
}
