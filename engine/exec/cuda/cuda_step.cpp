// One StepPlan on the GPU: cache operations, metadata upload, the forward pass, logits for the
// rows that need them, GPU sampling and one synchronisation. Decode-only steps of a bucketed batch
// size run as a CUDA graph (captured the first time a size is seen, replayed after), with padding
// rows on a reserved state block and page, and every launch shape independent of the step's
// lengths (principle 10).
#include <fmt/format.h>

#include <algorithm>

#include "engine/core/log.h"
#include "engine/exec/cuda/executor_state.h"
#include "kernels/cuda/fault_injection.h"

namespace kl {

namespace {

// The GPU sampler's row for a sequence (its parameters and penalty history appended to the
// step's token and bias arrays); greedy for unregistered sequences and rows not sampled.
kernels::GpuSamplingRow sampling_row(const SeqRegistry::Entry* e, std::vector<int32_t>& tokens,
                                     std::vector<int32_t>& bias_tokens,
                                     std::vector<float>& bias_values) {
  kernels::GpuSamplingRow row;
  if (!e) {
    row.temperature = 0.f;
    return row;
  }
  const kernels::SamplingRowParams rp = SeqRegistry::row_params(*e);
  const kernels::SamplingHistory h = SeqRegistry::history(*e);
  row.temperature = rp.temperature;
  row.top_k = rp.top_k;
  row.top_p = rp.top_p;
  row.min_p = rp.min_p;
  row.repetition_penalty = rp.repetition_penalty;
  row.presence_penalty = rp.presence_penalty;
  row.frequency_penalty = rp.frequency_penalty;
  row.num_logprobs = rp.num_logprobs;
  row.seed = rp.seed;
  row.position = rp.position;
  auto range = [&](const int32_t* p, int64_t n, int32_t& begin, int32_t& count) {
    begin = static_cast<int32_t>(tokens.size());
    count = static_cast<int32_t>(n);
    tokens.insert(tokens.end(), p, p + n);
  };
  // Only what the active penalties read is uploaded.
  if (rp.repetition_penalty != 1.f)
    range(h.prompt_tokens, h.num_prompt_tokens, row.prompt_begin, row.prompt_count);
  if (rp.repetition_penalty != 1.f || rp.presence_penalty != 0.f || rp.frequency_penalty != 0.f)
    range(h.output_tokens, h.num_output_tokens, row.output_begin, row.output_count);
  range(h.banned_tokens, h.num_banned_tokens, row.banned_begin, row.banned_count);
  row.bias_begin = static_cast<int32_t>(bias_tokens.size());
  row.bias_count = static_cast<int32_t>(h.num_logit_bias);
  for (int64_t i = 0; i < h.num_logit_bias; ++i) {
    bias_tokens.push_back(h.logit_bias[i].first);
    bias_values.push_back(h.logit_bias[i].second);
  }
  return row;
}

// Fixed capacities of a graph step's sampling arrays (their device addresses are captured).
constexpr int64_t kGraphTokenCap = int64_t{1} << 16;
constexpr int64_t kGraphBiasCap = int64_t{1} << 12;

// The sampler's rows for logit rows [r0, r0 + n) of a batch whose first `real_rows` logit rows
// belong to the plan (the rest are a graph step's padding, sampled greedily and ignored).
struct RowChunk {
  std::vector<kernels::GpuSamplingRow> rows;
  std::vector<int32_t> tokens, bias_tokens;
  std::vector<float> bias_values;
  bool host_logits = false;  // the host needs these logits (return_logits, prompt logprobs)
};

RowChunk sampling_rows(const SeqRegistry& registry, const StepPlan& plan, const StepBatch& b,
                       int64_t r0, int64_t n, int64_t real_rows) {
  RowChunk c;
  c.host_logits = plan.return_logits;
  for (int64_t r = r0; r < r0 + n; ++r) {
    if (r >= real_rows) {
      c.rows.push_back(sampling_row(nullptr, c.tokens, c.bias_tokens, c.bias_values));
      continue;
    }
    const int i = b.logit_seq[r];
    const SeqStep& q = plan.seqs[i];
    const SeqRegistry::Entry* e = registry.find(q.seq_id);
    if (q.logits == LogitsMode::kAll && e && e->reg.params->prompt_logprobs >= 0)
      c.host_logits = true;
    const bool last_row = r + 1 == real_rows || b.logit_seq[r + 1] != i;
    c.rows.push_back(q.sample && last_row
                         ? sampling_row(e, c.tokens, c.bias_tokens, c.bias_values)
                         : sampling_row(nullptr, c.tokens, c.bias_tokens, c.bias_values));
  }
  return c;
}

// Uploads a chunk's sampling arrays; with `fixed`, at the same device addresses whatever their
// sizes (padded to the graph capacities), as a captured graph requires.
kernels::SamplingCudaParams stage_sampling(CudaExecutor::State& s, MetadataUploader& up,
                                           RowChunk& c, int64_t n, bool fixed) {
  if (fixed) {
    c.tokens.resize(kGraphTokenCap);
    c.bias_tokens.resize(kGraphBiasCap);
    c.bias_values.resize(kGraphBiasCap);
  }
  up.begin();
  const int64_t o_rows = up.add(c.rows.data(), n * sizeof(c.rows[0]));
  const int64_t o_tok = up.add(c.tokens.data(), c.tokens.size() * 4);
  const int64_t o_bt = up.add(c.bias_tokens.data(), c.bias_tokens.size() * 4);
  const int64_t o_bv = up.add(c.bias_values.data(), c.bias_values.size() * 4);
  up.flush(s.stream);
  kernels::SamplingCudaParams sp;
  sp.logits = s.forward->logits();
  sp.logits_stride = s.config.vocab_size;
  sp.num_rows = n;
  sp.vocab = s.config.vocab_size;
  sp.rows = reinterpret_cast<const kernels::GpuSamplingRow*>(up.device(o_rows));
  sp.tokens = reinterpret_cast<const int32_t*>(up.device(o_tok));
  sp.bias_tokens = reinterpret_cast<const int32_t*>(up.device(o_bt));
  sp.bias_values = reinterpret_cast<const float*>(up.device(o_bv));
  sp.out_tokens = s.out_tokens->get();
  sp.out_logprobs = s.out_logprobs->get();
  sp.out_top_tokens = s.out_top_tokens->get();
  sp.out_top_logprobs = s.out_top_logprobs->get();
  return sp;
}

void run_sampler(CudaExecutor::State& s, const kernels::SamplingCudaParams& sp) {
  auto scope = s.forward->profiler().scope(KernelClass::kSampling, s.stream);
  s.sampler->run(sp, s.stream);
}

// Brings a chunk's tokens (and logits when needed) back, synchronises, and fills the outputs of
// the plan's rows in [r0, r0 + n) (rows past real_rows are padding).
void fetch_rows(CudaExecutor::State& s, const StepPlan& plan, const StepBatch& b, int64_t r0,
                int64_t n, int64_t real_rows, const RowChunk& c,
                const kernels::SamplingCudaParams& sp, const std::vector<int>& output_of,
                StepResult& result) {
  const int64_t V = s.config.vocab_size;
  const int32_t L = s.sampler->max_logprobs();
  std::vector<int32_t> tokens_h(n), top_tokens_h(n * L);
  std::vector<float> logprobs_h(n), top_logprobs_h(n * L), logits_h;
  cuda_ok(cudaMemcpyAsync(tokens_h.data(), sp.out_tokens, n * 4, cudaMemcpyDeviceToHost, s.stream),
          "cudaMemcpyAsync");
  cuda_ok(
      cudaMemcpyAsync(logprobs_h.data(), sp.out_logprobs, n * 4, cudaMemcpyDeviceToHost, s.stream),
      "cudaMemcpyAsync");
  if (L > 0) {
    cuda_ok(cudaMemcpyAsync(top_tokens_h.data(), sp.out_top_tokens, n * L * 4,
                            cudaMemcpyDeviceToHost, s.stream),
            "cudaMemcpyAsync");
    cuda_ok(cudaMemcpyAsync(top_logprobs_h.data(), sp.out_top_logprobs, n * L * 4,
                            cudaMemcpyDeviceToHost, s.stream),
            "cudaMemcpyAsync");
  }
  if (c.host_logits) {
    logits_h.resize(n * V);
    cuda_ok(
        cudaMemcpyAsync(logits_h.data(), sp.logits, n * V * 4, cudaMemcpyDeviceToHost, s.stream),
        "cudaMemcpyAsync");
  }
  cuda_ok(cudaStreamSynchronize(s.stream), "the step");
  for (int64_t r = r0; r < std::min(r0 + n, real_rows); ++r) {
    const int i = b.logit_seq[r];
    const SeqStep& q = plan.seqs[i];
    SeqOutput& out = result.outputs[output_of[i]];
    if (c.host_logits)
      out.logits.insert(out.logits.end(), logits_h.begin() + (r - r0) * V,
                        logits_h.begin() + (r - r0 + 1) * V);
    const bool last_row = r + 1 == real_rows || b.logit_seq[r + 1] != i;
    if (!(q.sample && last_row)) continue;
    out.sampled_token = tokens_h[r - r0];
    const kernels::GpuSamplingRow& row = c.rows[r - r0];
    if (row.num_logprobs >= 0) {
      out.logprob = logprobs_h[r - r0];
      for (int32_t k = 0; k < std::min(row.num_logprobs, L); ++k)
        out.top_logprobs.push_back(
            {top_tokens_h[(r - r0) * L + k], top_logprobs_h[(r - r0) * L + k]});
    }
  }
}

// The padded batch size a decode-only step runs at as a CUDA graph; 0: run it eagerly.
int64_t graph_bucket(const CudaExecutor::State& s, const StepPlan& plan) {
  if (s.graph_buckets.empty() || s.graphs_paused || plan.seqs.empty()) return 0;
  for (const SeqStep& q : plan.seqs)
    if (q.token_ids.size() != 1 || q.logits != LogitsMode::kLast || !q.sample ||
        static_cast<int64_t>(q.page_table.size()) > s.graph_page_stride)
      return 0;
  for (int64_t b : s.graph_buckets)
    if (b >= static_cast<int64_t>(plan.seqs.size())) return b;
  return 0;
}

}  // namespace

StepResult CudaExecutor::execute(StepPlan plan) {
  State& s = *s_;
  StepResult result;
  result.step_id = plan.step_id;
  if (!s.fatal.empty()) {
    result.ok = false;
    result.fatal = true;
    result.error = s.fatal;
    return result;
  }
  const int64_t V = s.config.vocab_size;
  // Phase 1, no device work: registration and validation of the plan against the caches the
  // engine sees (the graph padding's reserved block and page excluded). A bad plan fails this
  // step only.
  const int64_t blocks = num_state_blocks(), pages = num_pages();
  try {
    s.registry.begin_step(plan);
    build_step_batch(plan.seqs, V, pages, blocks, s.batch);
    for (const StateBlockOp& op : plan.block_ops)
      KL_CHECK(op.dst >= 0 && op.dst < blocks &&
                   (op.kind != StateBlockOp::Kind::kCopy || (op.src >= 0 && op.src < blocks)),
               "state block operation {} -> {} out of range [0, {})", op.src, op.dst, blocks);
    for (const PageCopy& c : plan.page_copies)
      KL_CHECK(c.src >= 0 && c.src < pages && c.dst >= 0 && c.dst < pages,
               "page copy {} -> {} out of range [0, {})", c.src, c.dst, pages);
  } catch (const Error& e) {
    result.ok = false;
    result.error = e.what();
    return result;
  }
  std::vector<int> output_of(plan.seqs.size(), -1);
  for (size_t i = 0; i < plan.seqs.size(); ++i) {
    if (plan.seqs[i].logits == LogitsMode::kNone) continue;
    output_of[i] = static_cast<int>(result.outputs.size());
    result.outputs.emplace_back();
    result.outputs.back().seq_id = plan.seqs[i].seq_id;
  }
  // Phase 2, on the device: any failure from here on leaves the caches (and possibly the CUDA
  // context) in an unknown state, so it is fatal.
  bool capturing = false;
  try {
    cuda_ok(cudaSetDevice(s.options.device), "cudaSetDevice");
    for (const StateBlockOp& op : plan.block_ops) {
      if (op.kind == StateBlockOp::Kind::kCopy)
        s.caches->copy_block(op.src, op.dst, s.stream);
      else
        s.caches->reset_block(op.dst, s.stream);
    }
    for (const PageCopy& c : plan.page_copies) s.caches->copy_page(c.src, c.dst, s.stream);
    for (const SeqStep& q : plan.seqs)
      if (q.reset_state) s.caches->reset_block(q.state_block, s.stream);
    if (++s.steps == s.options.inject_fault_at_step) kernels::inject_device_fault(s.stream);

    const int64_t bucket = graph_bucket(s, plan);
    RowChunk graph_rows;
    if (bucket > 0) {
      const int64_t real = static_cast<int64_t>(plan.seqs.size());
      graph_rows = sampling_rows(s.registry, plan, s.batch, 0, real, real);
      if (static_cast<int64_t>(graph_rows.tokens.size()) > kGraphTokenCap ||
          static_cast<int64_t>(graph_rows.bias_tokens.size()) > kGraphBiasCap)
        graph_rows.rows.clear();  // penalty histories beyond the graph's arrays: run eagerly
    }
    if (bucket > 0 && !graph_rows.rows.empty()) {
      // The padded batch: rows past the plan's decode a dummy token on the reserved block/page.
      const int64_t real = static_cast<int64_t>(plan.seqs.size());
      std::vector<SeqStep> padded = plan.seqs;
      for (int64_t i = real; i < bucket; ++i) {
        SeqStep pad;
        pad.seq_id = -1 - i;
        pad.token_ids = {0};
        pad.page_table = {s.pad_page};
        pad.state_block = s.pad_block;
        pad.logits = LogitsMode::kLast;
        padded.push_back(std::move(pad));
      }
      StepBatch& gb = s.batch;
      build_step_batch(padded, V, s.caches->num_pages(), s.caches->num_state_blocks(), gb,
                       s.graph_page_stride);
      gb.decode_keys_bound = s.graph_page_stride * kPageSize;
      s.caches->reset_block(s.pad_block, s.stream);  // the padding never accumulates state
      s.graph_batch_upload.upload(gb, s.stream);
      RowChunk pad_rows = sampling_rows(s.registry, plan, gb, real, bucket - real, real);
      graph_rows.rows.insert(graph_rows.rows.end(), pad_rows.rows.begin(), pad_rows.rows.end());
      const kernels::SamplingCudaParams sp =
          stage_sampling(s, s.graph_sampling_upload, graph_rows, bucket, /*fixed=*/true);
      auto launches = [&] {
        s.forward->run_layers(gb, *s.caches, s.stream);
        s.forward->compute_logits(gb.d_logit_rows, bucket, s.stream);
        run_sampler(s, sp);
      };
      auto it = s.graphs.find(bucket);
      if (it != s.graphs.end()) {
        cuda_ok(cudaGraphLaunch(it->second, s.stream), "cudaGraphLaunch");
        ++s.graph_replays;
      } else {
        // First step of this size: run it eagerly (its results count), then capture the same
        // launches for the next ones. Profiling events cannot be captured.
        launches();
        const bool profiling = s.forward->profiler().enabled();
        s.forward->profiler().set_enabled(false);
        cuda_ok(cudaStreamBeginCapture(s.stream, cudaStreamCaptureModeThreadLocal),
                "cudaStreamBeginCapture");
        capturing = true;
        launches();
        cudaGraph_t graph = nullptr;
        capturing = false;
        cuda_ok(cudaStreamEndCapture(s.stream, &graph), "cudaStreamEndCapture");
        cudaGraphExec_t exec = nullptr;
        const cudaError_t inst = cudaGraphInstantiate(&exec, graph, 0);
        cudaGraphDestroy(graph);
        cuda_ok(inst, "cudaGraphInstantiate");
        s.graphs[bucket] = exec;
        s.forward->profiler().set_enabled(profiling);
        logger("exec")->debug("captured the decode step of batch size {} as a CUDA graph", bucket);
      }
      fetch_rows(s, plan, gb, 0, bucket, real, graph_rows, sp, output_of, result);
    } else {
      s.batch_upload.upload(s.batch, s.stream);
      s.forward->run_layers(s.batch, *s.caches, s.stream);
      const StepBatch& b = s.batch;
      const int64_t total_rows = static_cast<int64_t>(b.logit_rows.size());
      for (int64_t r0 = 0; r0 < total_rows; r0 += s.max_logit_rows) {
        const int64_t n = std::min(s.max_logit_rows, total_rows - r0);
        s.forward->compute_logits(b.d_logit_rows + r0, n, s.stream);
        RowChunk c = sampling_rows(s.registry, plan, b, r0, n, total_rows);
        const kernels::SamplingCudaParams sp =
            stage_sampling(s, s.sampling_upload, c, n, /*fixed=*/false);
        run_sampler(s, sp);
        fetch_rows(s, plan, b, r0, n, total_rows, c, sp, output_of, result);
      }
    }
    cuda_ok(cudaStreamSynchronize(s.stream), "the step");
    if (s.forward->profiler().enabled()) {
      s.forward->profiler().collect();
      s.forward->profiler().end_step();
    }
    for (size_t i = 0; i < plan.seqs.size(); ++i) {
      const SeqStep& q = plan.seqs[i];
      if (output_of[i] < 0) continue;
      SeqOutput& out = result.outputs[output_of[i]];
      const SeqRegistry::Entry* e = s.registry.find(q.seq_id);
      if (q.logits == LogitsMode::kAll && e && e->reg.params->prompt_logprobs >= 0) {
        const int64_t rows = static_cast<int64_t>(out.logits.size()) / V;
        out.prompt_logprobs =
            prompt_logprobs_of(out.logits.data(), rows, V, q, e->reg.params->prompt_logprobs);
      }
      if (q.sample) s.registry.record(q.seq_id, out.sampled_token);
      if (!plan.return_logits) std::vector<float>().swap(out.logits);
    }
  } catch (const Error& e) {
    if (capturing) {
      cudaGraph_t graph = nullptr;
      cudaStreamEndCapture(s.stream, &graph);
      if (graph) cudaGraphDestroy(graph);
    }
    result.ok = false;
    result.fatal = true;
    result.outputs.clear();
    const cudaError_t sticky = cudaStreamSynchronize(s.stream);
    s.fatal = sticky != cudaSuccess
                  ? fmt::format("CUDA error: {} (after: {})", cudaGetErrorString(sticky), e.what())
                  : fmt::format("GPU step failed: {}", e.what());
    result.error = s.fatal;
    logger("exec")->critical("step {}: {}; the executor stops", plan.step_id, s.fatal);
  }
  return result;
}

int64_t CudaExecutor::graph_replays() const {
  return s_->graph_replays;
}

void CudaExecutor::set_cuda_graphs(bool on) {
  s_->graphs_paused = !on;
}

}  // namespace kl
