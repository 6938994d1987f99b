// The CUDA executor: memory plan and construction, then per step: cache operations, metadata
// upload, the forward pass, logits for the rows that need them (in slices of max_logit_rows), GPU
// sampling and one synchronisation to bring the tokens back.
#include "engine/exec/cuda/cuda_executor.h"

#include <cuda_runtime.h>

#include <algorithm>

#include <fmt/format.h>

#include "engine/core/error.h"
#include "engine/core/log.h"
#include "engine/exec/cuda/device_caches.h"
#include "engine/exec/cuda/device_model.h"
#include "engine/exec/cuda/executor_state.h"
#include "engine/exec/cuda/step_batch.h"
#include "engine/exec/kv_layout.h"
#include "kernels/cuda/device_info.h"
#include "kernels/cuda/fault_injection.h"
#include "kernels/sampling/sampling_cuda.h"

namespace kl {
namespace {

constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;

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
  s.plan.other_bytes = std::max<int64_t>(0, in_use - s.plan.weights_bytes - s.plan.workspace_bytes);
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
          options.gpu_memory_utilization, s.plan.budget_bytes / kGiB, s.plan.weights_bytes / kGiB,
          s.plan.workspace_bytes / kGiB);
    // One state block more than max_num_seqs when CUDA graphs reserve one for their padding.
    const bool reserve = options.cuda_graphs && options.max_model_len > 0;
    budget = split_cache_budget(spec, left, act_bytes, options.max_num_seqs + (reserve ? 1 : 0));
  }
  // CUDA graphs pad decode batches to fixed sizes; the padding rows use one reserved state block
  // and page that the engine never sees.
  const bool graphs = options.cuda_graphs && options.max_model_len > 0;
  if (graphs && options.num_pages == 0) {
    KL_CHECK(budget.num_pages > 1 && budget.num_state_blocks > 1,
             "the cache budget is too small for CUDA graphs' padding (use --enforce-eager)");
    --budget.num_pages;
    --budget.num_state_blocks;
  }
  const int64_t reserved = graphs ? 1 : 0;
  s.caches = std::make_unique<DeviceCaches>(config, budget.num_pages + reserved,
                                            budget.num_state_blocks + reserved, options.activation);
  if (graphs) {
    s.pad_page = static_cast<int32_t>(budget.num_pages);
    s.pad_block = static_cast<int32_t>(budget.num_state_blocks);
    s.graph_page_stride = (options.max_model_len + kPageSize - 1) / kPageSize + 1;
    for (int64_t b = 1; b < options.max_num_seqs; b *= 2) s.graph_buckets.push_back(b);
    s.graph_buckets.push_back(options.max_num_seqs);
    // Fixed device addresses for every bucket's metadata (the graphs capture them).
    const int64_t B = options.max_num_seqs;
    s.graph_batch_upload.reserve(B * (40 + 4 * s.graph_page_stride) + 4096);
    s.graph_sampling_upload.reserve(B * static_cast<int64_t>(sizeof(kernels::GpuSamplingRow)) +
                                    (int64_t{1} << 16) * 4 + (int64_t{1} << 12) * 8 + 4096);
  }
  s.plan.num_pages = budget.num_pages;
  s.plan.num_state_blocks = budget.num_state_blocks;
  s.plan.cache_bytes = s.caches->bytes();
  log->info("GPU memory plan: {}", s.plan.describe());
  log->info("CUDA graphs: {}",
            graphs ? fmt::format("decode batches padded to {}", fmt::join(s.graph_buckets, ", "))
                   : std::string("off (eager launches)"));
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

}  // namespace kl
