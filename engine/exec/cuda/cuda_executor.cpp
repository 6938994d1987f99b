// The CUDA executor: memory plan and construction, then per step: cache operations, metadata
// upload, the forward pass, logits for the rows that need them (in slices of max_logit_rows), GPU
// sampling and one synchronisation to bring the tokens back.
#include "engine/exec/cuda/cuda_executor.h"

#include <cuda_runtime.h>

#include <algorithm>

#include <fmt/format.h>

#include "engine/core/error.h"
#include "engine/core/log.h"
#include "engine/exec/cuda/cuda_forward.h"
#include "engine/exec/cuda/device_caches.h"
#include "engine/exec/cuda/device_model.h"
#include "engine/exec/cuda/step_batch.h"
#include "engine/exec/kv_layout.h"
#include "kernels/cuda/device_info.h"
#include "kernels/cuda/fault_injection.h"
#include "kernels/sampling/sampling_cuda.h"

namespace kl {
namespace {

constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;

void cuda_ok(cudaError_t e, const char* what) {
  KL_CHECK(e == cudaSuccess, "{} failed: {}", what, cudaGetErrorString(e));
}

template <typename T>
class DeviceVector {
 public:
  explicit DeviceVector(int64_t n) {
    cuda_ok(cudaMalloc(&p_, static_cast<size_t>(std::max<int64_t>(n, 1)) * sizeof(T)),
            "cudaMalloc(sampler outputs)");
  }
  ~DeviceVector() { cudaFree(p_); }
  DeviceVector(const DeviceVector&) = delete;
  DeviceVector& operator=(const DeviceVector&) = delete;
  T* get() const { return p_; }

 private:
  T* p_ = nullptr;
};

}  // namespace

std::string GpuMemoryPlan::describe() const {
  return fmt::format(
      "{}: budget {:.2f} GiB of {:.2f} GiB = weights {:.2f} GiB + activations/scratch {:.2f} GiB "
      "+ CUDA context/other {:.2f} GiB + caches {:.2f} GiB ({} MLA pages = {} tokens, {} KDA state "
      "blocks = {} sequences)",
      gpu, budget_bytes / kGiB, total_bytes / kGiB, weights_bytes / kGiB, workspace_bytes / kGiB,
      other_bytes / kGiB, cache_bytes / kGiB, num_pages, num_pages * kPageSize, num_state_blocks,
      num_state_blocks);
}

struct CudaExecutor::State {
  ModelConfig config;
  CudaExecutorOptions options;
  GpuMemoryPlan plan;
  cudaStream_t stream = nullptr;
  std::unique_ptr<DeviceModel> model;
  std::unique_ptr<CudaForward> forward;
  std::unique_ptr<kernels::GpuSampler> sampler;
  std::unique_ptr<DeviceCaches> caches;
  int64_t max_logit_rows = 0;
  std::unique_ptr<DeviceVector<int32_t>> out_tokens, out_top_tokens;
  std::unique_ptr<DeviceVector<float>> out_logprobs, out_top_logprobs;
  MetadataUploader batch_upload, sampling_upload;
  SeqRegistry registry;
  StepBatch batch;
  int64_t steps = 0;
  std::string fatal;  // set once a CUDA error happened: every later step fails with it

  ~State() {
    caches.reset();
    sampler.reset();
    forward.reset();
    model.reset();
    if (stream) cudaStreamDestroy(stream);
  }
};

CudaExecutor::CudaExecutor(const ModelConfig& config, const ModelWeights& host,
                           const CudaExecutorOptions& options,
                           const std::function<void(double)>& progress)
    : s_(std::make_unique<State>()) {
  auto log = logger("exec");
  State& s = *s_;
  s.config = config;
  s.options = options;
  const kernels::GpuInventory inv = kernels::list_gpus();
  if (inv.gpus.empty()) fail("--device cuda: no usable GPU ({})", inv.note);
  KL_CHECK(options.device >= 0 && options.device < static_cast<int>(inv.gpus.size()),
           "GPU {} does not exist ({} visible)", options.device, inv.gpus.size());
  const kernels::GpuInfo& gpu = inv.gpus[options.device];
  if (const std::string why = kernels::hopper_check(gpu); !why.empty()) fail("{}", why);
  KL_CHECK(options.gpu_memory_utilization > 0 && options.gpu_memory_utilization <= 1,
           "--gpu-memory-utilization {} must be in (0, 1]", options.gpu_memory_utilization);
  cuda_ok(cudaSetDevice(options.device), "cudaSetDevice");
  cuda_ok(cudaStreamCreateWithFlags(&s.stream, cudaStreamNonBlocking), "cudaStreamCreate");
  size_t free_bytes = 0, total_bytes = 0;
  cuda_ok(cudaMemGetInfo(&free_bytes, &total_bytes), "cudaMemGetInfo");
  s.plan.gpu = fmt::format("GPU {} {} ({:.1f} GiB)", options.device, gpu.name, total_bytes / kGiB);
  s.plan.total_bytes = static_cast<int64_t>(total_bytes);
  s.plan.budget_bytes =
      static_cast<int64_t>(options.gpu_memory_utilization * static_cast<double>(total_bytes));

  s.model = std::make_unique<DeviceModel>(config, host, options.activation, progress,
                                          options.dummy_layout);
  s.plan.weights_bytes = s.model->bytes();

  ForwardLimits limits;
  limits.max_tokens = std::max(options.max_num_batched_tokens, options.max_num_seqs);
  s.max_logit_rows = std::max<int64_t>(options.max_num_seqs, 1);
  limits.max_logit_rows = s.max_logit_rows;
  s.forward = CudaForward::create(config, *s.model, limits);
  s.forward->profiler().set_enabled(options.profile);
  s.sampler = std::make_unique<kernels::GpuSampler>(s.max_logit_rows, config.vocab_size,
                                                    options.max_logprobs);
  const int64_t R = s.max_logit_rows, L = options.max_logprobs;
  s.out_tokens = std::make_unique<DeviceVector<int32_t>>(R);
  s.out_logprobs = std::make_unique<DeviceVector<float>>(R);
  s.out_top_tokens = std::make_unique<DeviceVector<int32_t>>(R * std::max<int64_t>(L, 1));
  s.out_top_logprobs = std::make_unique<DeviceVector<float>>(R * std::max<int64_t>(L, 1));
  s.plan.workspace_bytes = s.forward->workspace_bytes() + s.sampler->workspace_bytes();

  // Whatever the budget leaves after everything allocated so far becomes cache.
  cuda_ok(cudaMemGetInfo(&free_bytes, &total_bytes), "cudaMemGetInfo");
  const int64_t in_use = static_cast<int64_t>(total_bytes - free_bytes);
  s.plan.other_bytes =
      std::max<int64_t>(0, in_use - s.plan.weights_bytes - s.plan.workspace_bytes);
  const CacheSpec spec = cache_spec(config);
  const size_t act_bytes = dtype_size(options.activation);
  CacheBudget budget;
  if (options.num_pages > 0 && options.num_state_blocks > 0) {
    budget.num_pages = options.num_pages;
    budget.num_state_blocks = options.num_state_blocks;
  } else {
    const int64_t left = s.plan.budget_bytes - in_use;
    if (left <= 0)
      fail(
          "--gpu-memory-utilization {}: the budget of {:.2f} GiB is already used up by the weights "
          "({:.2f} GiB), activations ({:.2f} GiB) and the CUDA context; no room for the caches. "
          "Raise --gpu-memory-utilization or lower --max-num-batched-tokens / --max-num-seqs",
          options.gpu_memory_utilization, s.plan.budget_bytes / kGiB,
          s.plan.weights_bytes / kGiB, s.plan.workspace_bytes / kGiB);
    budget = split_cache_budget(spec, left, act_bytes, options.max_num_seqs);
  }
  s.caches = std::make_unique<DeviceCaches>(config, budget.num_pages, budget.num_state_blocks,
                                            options.activation);
  s.plan.num_pages = budget.num_pages;
  s.plan.num_state_blocks = budget.num_state_blocks;
  s.plan.cache_bytes = s.caches->bytes();
  log->info("GPU memory plan: {}", s.plan.describe());
  start_worker();
}

CudaExecutor::~CudaExecutor() {
  stop_worker();
}

int64_t CudaExecutor::num_pages() const {
  return s_->plan.num_pages;
}
int64_t CudaExecutor::num_state_blocks() const {
  return s_->plan.num_state_blocks;
}
const GpuMemoryPlan& CudaExecutor::memory_plan() const {
  return s_->plan;
}

std::string CudaExecutor::profile_report(bool reset) {
  KernelProfiler& p = s_->forward->profiler();
  std::string r = p.report();
  if (reset) p.reset();
  return r;
}

void CudaExecutor::set_profile(bool on) {
  s_->forward->profiler().set_enabled(on);
}

std::vector<std::pair<std::string, double>> CudaExecutor::profile_ms_per_step() const {
  const KernelProfiler& p = s_->forward->profiler();
  std::vector<std::pair<std::string, double>> out;
  for (int c = 0; c < kNumKernelClasses; ++c) {
    const auto k = static_cast<KernelClass>(c);
    out.emplace_back(kernel_class_name(k), p.steps() ? p.total_ms(k) / p.steps() : 0.0);
  }
  return out;
}

StepResult CudaExecutor::run_now(const StepPlan& plan) {
  return execute(plan);
}

StepResult CudaExecutor::run_step(StepPlan plan, Clock::time_point) {
  return execute(std::move(plan));
}

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
  // Phase 1, no device work: registration and validation of the plan. A bad plan fails this step
  // only.
  try {
    s.registry.begin_step(plan);
    build_step_batch(plan.seqs, V, s.caches->num_pages(), s.caches->num_state_blocks(), s.batch);
    const int64_t blocks = s.caches->num_state_blocks(), pages = s.caches->num_pages();
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
  // Phase 2, on the device: any failure from here on leaves the caches (and possibly the CUDA
  // context) in an unknown state, so it is fatal.
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
    s.batch_upload.upload(s.batch, s.stream);
    if (++s.steps == s.options.inject_fault_at_step) kernels::inject_device_fault(s.stream);
    s.forward->run_layers(s.batch, *s.caches, s.stream);

    // Outputs in plan order, one per sequence with logits.
    const StepBatch& b = s.batch;
    std::vector<int> output_of(plan.seqs.size(), -1);
    for (size_t i = 0; i < plan.seqs.size(); ++i) {
      if (plan.seqs[i].logits == LogitsMode::kNone) continue;
      output_of[i] = static_cast<int>(result.outputs.size());
      result.outputs.emplace_back();
      result.outputs.back().seq_id = plan.seqs[i].seq_id;
    }
    const int64_t total_rows = static_cast<int64_t>(b.logit_rows.size());
    const int32_t L = s.sampler->max_logprobs();
    std::vector<int32_t> tokens_h, top_tokens_h;
    std::vector<float> logprobs_h, top_logprobs_h, logits_h;
    for (int64_t r0 = 0; r0 < total_rows; r0 += s.max_logit_rows) {
      const int64_t n = std::min(s.max_logit_rows, total_rows - r0);
      s.forward->compute_logits(b.d_logit_rows + r0, n, s.stream);
      // Rows whose logits the host needs: return_logits, and prompt logprobs.
      bool host_logits = plan.return_logits;
      std::vector<kernels::GpuSamplingRow> rows;
      std::vector<int32_t> tokens, bias_tokens;
      std::vector<float> bias_values;
      for (int64_t r = r0; r < r0 + n; ++r) {
        const int i = b.logit_seq[r];
        const SeqStep& q = plan.seqs[i];
        const SeqRegistry::Entry* e = s.registry.find(q.seq_id);
        if (q.logits == LogitsMode::kAll && e && e->reg.params->prompt_logprobs >= 0)
          host_logits = true;
        const bool last_row = r + 1 == total_rows || b.logit_seq[r + 1] != i;
        rows.push_back(q.sample && last_row ? sampling_row(e, tokens, bias_tokens, bias_values)
                                            : sampling_row(nullptr, tokens, bias_tokens,
                                                           bias_values));
      }
      s.sampling_upload.begin();
      const int64_t o_rows = s.sampling_upload.add(rows.data(), n * sizeof(rows[0]));
      const int64_t o_tok = s.sampling_upload.add(tokens.data(), tokens.size() * 4);
      const int64_t o_bt = s.sampling_upload.add(bias_tokens.data(), bias_tokens.size() * 4);
      const int64_t o_bv = s.sampling_upload.add(bias_values.data(), bias_values.size() * 4);
      s.sampling_upload.flush(s.stream);
      kernels::SamplingCudaParams sp;
      sp.logits = s.forward->logits();
      sp.logits_stride = V;
      sp.num_rows = n;
      sp.vocab = V;
      sp.rows = reinterpret_cast<const kernels::GpuSamplingRow*>(s.sampling_upload.device(o_rows));
      sp.tokens = reinterpret_cast<const int32_t*>(s.sampling_upload.device(o_tok));
      sp.bias_tokens = reinterpret_cast<const int32_t*>(s.sampling_upload.device(o_bt));
      sp.bias_values = reinterpret_cast<const float*>(s.sampling_upload.device(o_bv));
      sp.out_tokens = s.out_tokens->get();
      sp.out_logprobs = s.out_logprobs->get();
      sp.out_top_tokens = s.out_top_tokens->get();
      sp.out_top_logprobs = s.out_top_logprobs->get();
      {
        auto scope = s.forward->profiler().scope(KernelClass::kSampling, s.stream);
        s.sampler->run(sp, s.stream);
      }
      tokens_h.resize(n);
      logprobs_h.resize(n);
      top_tokens_h.resize(n * L);
      top_logprobs_h.resize(n * L);
      cuda_ok(cudaMemcpyAsync(tokens_h.data(), sp.out_tokens, n * 4, cudaMemcpyDeviceToHost,
                              s.stream),
              "cudaMemcpyAsync");
      cuda_ok(cudaMemcpyAsync(logprobs_h.data(), sp.out_logprobs, n * 4, cudaMemcpyDeviceToHost,
                              s.stream),
              "cudaMemcpyAsync");
      if (L > 0) {
        cuda_ok(cudaMemcpyAsync(top_tokens_h.data(), sp.out_top_tokens, n * L * 4,
                                cudaMemcpyDeviceToHost, s.stream),
                "cudaMemcpyAsync");
        cuda_ok(cudaMemcpyAsync(top_logprobs_h.data(), sp.out_top_logprobs, n * L * 4,
                                cudaMemcpyDeviceToHost, s.stream),
                "cudaMemcpyAsync");
      }
      if (host_logits) {
        logits_h.resize(n * V);
        cuda_ok(cudaMemcpyAsync(logits_h.data(), sp.logits, n * V * 4, cudaMemcpyDeviceToHost,
                                s.stream),
                "cudaMemcpyAsync");
      }
      cuda_ok(cudaStreamSynchronize(s.stream), "the step");
      for (int64_t r = r0; r < r0 + n; ++r) {
        const int i = b.logit_seq[r];
        const SeqStep& q = plan.seqs[i];
        SeqOutput& out = result.outputs[output_of[i]];
        if (host_logits)
          out.logits.insert(out.logits.end(), logits_h.begin() + (r - r0) * V,
                            logits_h.begin() + (r - r0 + 1) * V);
        const bool last_row = r + 1 == total_rows || b.logit_seq[r + 1] != i;
        if (!(q.sample && last_row)) continue;
        out.sampled_token = tokens_h[r - r0];
        const kernels::GpuSamplingRow& row = rows[r - r0];
        if (row.num_logprobs >= 0) {
          out.logprob = logprobs_h[r - r0];
          for (int32_t k = 0; k < std::min(row.num_logprobs, L); ++k)
            out.top_logprobs.push_back(
                {top_tokens_h[(r - r0) * L + k], top_logprobs_h[(r - r0) * L + k]});
        }
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

}  // namespace kl
