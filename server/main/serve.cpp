// `klserve serve`: load the model (or create the embedded default), build the engine, start the
// HTTP and gRPC front ends, and shut down gracefully on SIGTERM / SIGINT.
#include "server/main/serve.h"

#include <algorithm>
#include <atomic>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <thread>

#include <unistd.h>

#include "engine/api/engine.h"
#include "engine/checkpoint/weight_store.h"
#include "engine/core/error.h"
#include "engine/core/log.h"
#include "engine/exec/cpu_executor.h"
#ifdef KL_HAVE_CUDA
#include "engine/exec/cuda/cuda_executor.h"
#endif
#include "engine/exec/kv_layout.h"
#include "server/http/builtin_routes.h"
#include "server/http/http_server.h"
#include "server/main/default_model.h"
#include "server/metrics/metrics.h"
#include "server/openai/openai_routes.h"
#include "server/serving/serving_context.h"
#include "server/tokenizer/chat_template.h"
#include "server/tokenizer/kimi_tokenizer.h"
#ifdef KL_HAVE_GRPC
#include "server/grpc/grpc_server.h"
#endif

namespace kl {

namespace fs = std::filesystem;

namespace {

// A progress bar on stderr: redrawn in place on a terminal, one line per 10% otherwise (logs).
class ProgressBar {
 public:
  ProgressBar(const char* label, double total_mib)
      : label_(label), total_(total_mib), tty_(isatty(STDERR_FILENO)) {}
  ~ProgressBar() {
    if (tty_ && last_pct_ >= 0) std::fprintf(stderr, "\n");
  }
  void update(double fraction) {
    const int pct = static_cast<int>(100 * std::clamp(fraction, 0.0, 1.0));
    if (pct == last_pct_ || (!tty_ && pct % 10 != 0)) return;
    const int bar = pct / 4;
    std::fprintf(stderr, "%s%s [%.*s%*s] %3d%% %.1f/%.1f MiB%s", tty_ ? "\r" : "", label_, bar,
                 "=========================", 25 - bar, "", pct, fraction * total_, total_,
                 tty_ ? "" : "\n");
    last_pct_ = pct;
  }

 private:
  const char* label_;
  double total_;
  bool tty_;
  int last_pct_ = -1;
};

// Reads one byte of every page of every tensor so that the weights are resident before the
// first request.
void prefault_weights(const WeightStore& store) {
  const uint64_t total = std::max<uint64_t>(store.total_bytes(), 1);
  ProgressBar bar("loading weights", total / 1048576.0);
  uint64_t done = 0;
  volatile uint8_t sink = 0;
  for (const TensorInfo& t : store.tensors()) {
    auto bytes = store.bytes(t.name);
    for (size_t i = 0; i < bytes.size(); i += 4096) sink = sink + static_cast<uint8_t>(bytes[i]);
    done += bytes.size();
    bar.update(static_cast<double>(done) / total);
  }
}

// max_model_len limited to what `num_pages` hold: lowered with a warning, or an error naming
// `remedy` when the user asked for it explicitly.
int64_t fit_max_model_len(int64_t max_model_len, bool explicit_len, int64_t num_pages,
                          const char* remedy) {
  if (pages_for_tokens(max_model_len) <= num_pages) return max_model_len;
  const int64_t fit = num_pages * kPageSize;
  if (explicit_len)
    fail(
        "--max-model-len {} needs {} pages but the cache holds {} ({} tokens); {} or lower "
        "--max-model-len",
        max_model_len, pages_for_tokens(max_model_len), num_pages, fit, remedy);
  logger("server")->warn("max_model_len lowered from {} to {} tokens to fit the cache",
                         max_model_len, fit);
  return fit;
}

sigset_t shutdown_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  return set;
}

}  // namespace

int run_serve(const ServeOptions& o) {
  spdlog::set_level(spdlog::level::from_str(o.log_level));
  auto log = logger("server");
  // Block the shutdown signals in every thread (threads inherit the mask); main waits for them.
  sigset_t signals = shutdown_signals();
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  std::signal(SIGPIPE, SIG_IGN);

  // Validation of options that depend on each other.
  const bool cuda = o.device == "cuda";
#ifndef KL_HAVE_CUDA
  if (cuda) fail("--device cuda: this build has no CUDA support (built with KL_ENABLE_CUDA=OFF)");
#endif
  if (o.tensor_parallel_size != 1)
    fail("--tensor-parallel-size {}: tensor parallelism is not implemented yet",
         o.tensor_parallel_size);
  if (!cuda && o.dtype == "bfloat16")
    fail("--dtype bfloat16: the CPU executor computes in float32; use --dtype auto or float32");
  // The GPU computes in bfloat16 unless asked for float32 (the golden-data path).
  const DType activation = cuda && o.dtype != "float32" ? DType::kBF16 : DType::kF32;

  const bool embedded = o.model_dir.empty();
  const std::string dir = embedded ? ensure_default_model() : o.model_dir;
  if (!fs::is_directory(dir)) fail("model directory {} does not exist", dir);
  const ModelConfig config = load_model_config((fs::path(dir) / "config.json").string());
  log->info("model: {} ({})", embedded ? "embedded default" : dir, dir);
  log->info("layer plan: {}", describe_layer_plan(config));

  // Tokenizer.
  ServingContext ctx;
  std::vector<int32_t> stop_ids(config.eos_token_ids.begin(), config.eos_token_ids.end());
  if (!o.skip_tokenizer_init) {
    if (!fs::exists(fs::path(dir) / "tiktoken.model"))
      fail("{} has no tiktoken.model: pass --skip-tokenizer-init to serve token ids only", dir);
    tok::KimiTokenizerFiles files = tok::load_kimi_tokenizer(dir);
    KL_CHECK(files.tokenizer->vocab_size() <= config.vocab_size,
             "the tokenizer has {} ids but the model's vocabulary is {}",
             files.tokenizer->vocab_size(), config.vocab_size);
    tok::log_chat_template(tok::identify_chat_template(files.chat_template));
    for (int32_t id : files.ids.stop_ids())
      if (std::find(stop_ids.begin(), stop_ids.end(), id) == stop_ids.end()) stop_ids.push_back(id);
    ctx.tokenizer = files.tokenizer;
    ctx.control_ids = files.ids;
    log->info("tokenizer: {} ids, stop ids [{}]", files.tokenizer->vocab_size(),
              fmt::join(stop_ids, ", "));
  } else {
    log->info("tokenizer: skipped (--skip-tokenizer-init): token ids only");
  }

  // Limits. The CPU cache is sized here (--kv-cache-space, float32); the GPU's comes from the
  // memory plan once the weights are on the device.
  int64_t max_model_len =
      config.max_position_embeddings > 0 ? config.max_position_embeddings : 8192;
  if (o.max_model_len > 0) {
    if (config.max_position_embeddings > 0 && o.max_model_len > config.max_position_embeddings)
      fail("--max-model-len {} exceeds the model's limit of {} tokens", o.max_model_len,
           config.max_position_embeddings);
    max_model_len = o.max_model_len;
  }
  const CacheSpec spec = cache_spec(config);
  CacheBudget cache;
  if (!cuda) {
    const int64_t budget = static_cast<int64_t>(o.kv_cache_space_gib * (1 << 30));
    cache = split_cache_budget(spec, budget, sizeof(float), o.max_num_seqs);
    log->info("cache: {}", describe_cache_budget(spec, cache, sizeof(float)));
    max_model_len = fit_max_model_len(max_model_len, o.max_model_len > 0, cache.num_pages,
                                      "raise --kv-cache-space");
  }

  ctx.card.served_model_name = !o.served_model_name.empty() ? o.served_model_name
                               : embedded                   ? "klserve-default"
                                                            : fs::path(dir).filename().string();
  ctx.card.model_dir = dir;
  ctx.card.max_model_len = max_model_len;
  ctx.card.vocab_size = config.vocab_size;
  ctx.card.created = static_cast<int64_t>(std::time(nullptr));
  ctx.api_key = o.api_key;
  Metrics metrics(ctx.card.served_model_name);
  ctx.metrics = &metrics;

  http::Router router;
  http::add_builtin_routes(router, ctx);
  openai::add_openai_routes(router, ctx);
  http::ServerOptions hopts;
  hopts.host = o.host;
  hopts.port = static_cast<uint16_t>(o.port);
  hopts.api_key = o.api_key;
  hopts.num_threads = o.http_threads;
  // A request body cannot usefully exceed max_model_len tokens of text (a generous 16 bytes
  // per token for JSON escaping and multi-byte text) plus room for the other fields.
  hopts.max_body_bytes = static_cast<size_t>(max_model_len) * 16 + (1 << 20);
  http::Server http_server(hopts, std::move(router));
  http_server.start();
  log->info("listening: HTTP http://{}:{} (model \"{}\", max_model_len {})", o.host,
            http_server.port(), ctx.card.served_model_name, max_model_len);
#ifdef KL_HAVE_GRPC
  std::unique_ptr<grpcfe::GrpcServer> grpc_server;
  if (o.grpc_port > 0) {
    grpcfe::GrpcOptions gopts;
    gopts.host = o.host;
    gopts.port = static_cast<uint16_t>(o.grpc_port);
    gopts.api_key = o.api_key;
    grpc_server = std::make_unique<grpcfe::GrpcServer>(ctx, gopts);
    grpc_server->start();
    grpc_server->set_serving(true);
    log->info("listening: gRPC {}:{}", o.host, grpc_server->port());
  }
#else
  if (o.grpc_port > 0) log->warn("gRPC requested but this build has no gRPC (KL_ENABLE_GRPC=OFF)");
#endif
  // The front ends answer from here on (503 "loading" until the engine exists).
  const LoadFormat format = parse_load_format(o.load_format);
  // Dummy weights for the GPU are generated there: the full-size model never exists on the host.
  WeightStore store = cuda && format == LoadFormat::kDummy
                          ? WeightStore::dummy_layout(config, o.seed)
                          : WeightStore::load(format, dir, config, o.seed);
  log->info("weights: {} tensors, {:.1f} MiB from {}", store.num_tensors(),
            store.total_bytes() / 1048576.0, store.source());
  // (The GPU upload reads every page itself.)
  if (format == LoadFormat::kAuto && !cuda) prefault_weights(store);
  ModelWeights weights = bind_model_weights(config, store);
  std::unique_ptr<Executor> executor;
#ifdef KL_HAVE_CUDA
  if (cuda) {
    CudaExecutorOptions eo;
    eo.activation = activation;
    eo.gpu_memory_utilization = o.gpu_memory_utilization;
    eo.max_num_seqs = o.max_num_seqs;
    eo.max_num_batched_tokens = o.max_num_batched_tokens;
    eo.cuda_graphs = !o.enforce_eager;
    eo.max_model_len = max_model_len;
    if (store.layout_only()) eo.dummy_layout = &store;
    // Test hook (documented in docs/configuration.md): trap in the N-th step.
    if (const char* f = std::getenv("KLSERVE_INJECT_CUDA_FAULT_AT_STEP"))
      eo.inject_fault_at_step = std::atoll(f);
    log->info("device: cuda, activations {}", activation == DType::kBF16 ? "bfloat16" : "float32");
    ProgressBar bar(
        store.layout_only() ? "generating weights on the GPU" : "uploading weights to the GPU",
        store.total_bytes() / 1048576.0);
    executor =
        std::make_unique<CudaExecutor>(config, weights, eo, [&](double f) { bar.update(f); });
    cache.num_pages = executor->num_pages();
    cache.num_state_blocks = executor->num_state_blocks();
    max_model_len = fit_max_model_len(max_model_len, o.max_model_len > 0, cache.num_pages,
                                      "raise --gpu-memory-utilization");
    ctx.card.max_model_len = max_model_len;
  }
#endif
  if (!executor)
    executor =
        std::make_unique<CpuExecutor>(config, weights, cache.num_pages, cache.num_state_blocks);
  EngineConfig ec;
  ec.vocab_size = config.vocab_size;
  ec.max_num_waiting = o.max_num_waiting;
  ec.seed = o.seed;
  ec.scheduler.max_num_seqs =
      static_cast<int>(std::min<int64_t>(o.max_num_seqs, cache.num_state_blocks));
  ec.scheduler.max_num_batched_tokens = o.max_num_batched_tokens;
  ec.scheduler.max_model_len = max_model_len;
  ec.scheduler.eos_token_ids = stop_ids;
  // A fatal executor error (any CUDA error): /health turns 503, every request has been failed,
  // and the main thread is woken to exit non-zero.
  std::atomic<bool> fatal{false};
  ec.on_fatal = [&](const std::string& error) {
    log->critical("fatal error: {}; exiting", error);
    ctx.health = HealthState::kFailed;
    fatal = true;
    kill(getpid(), SIGTERM);
  };
  Engine engine(ec, std::move(executor));

  ctx.engine = &engine;
  ctx.health = HealthState::kReady;  // after the engine: readers check health first
  log->info("ready");

  int sig = 0;
  sigwait(&signals, &sig);
  if (fatal) {
    engine.shutdown(/*drain=*/false);
    http_server.stop(std::chrono::milliseconds(1000));
#ifdef KL_HAVE_GRPC
    if (grpc_server) grpc_server->stop(std::chrono::milliseconds(1000));
#endif
    log->critical("stopped after a fatal error: {}", engine.fatal_error());
    return 1;
  }
  log->info("received {}: draining (up to {:.0f} s for in-flight requests)",
            sig == SIGTERM ? "SIGTERM" : "SIGINT", o.shutdown_timeout);
  ctx.health = HealthState::kDraining;
#ifdef KL_HAVE_GRPC
  if (grpc_server) grpc_server->set_serving(false);
#endif
  engine.stop_accepting();
  const auto timeout = std::chrono::milliseconds(static_cast<int64_t>(o.shutdown_timeout * 1000));
  const bool drained = engine.wait_idle(timeout);
  if (!drained) log->warn("shutdown timeout reached: cancelling the remaining requests");
  engine.shutdown(/*drain=*/false);  // aborts what is left; their streams end with "abort"
  http_server.stop(std::chrono::milliseconds(1000));
#ifdef KL_HAVE_GRPC
  if (grpc_server) grpc_server->stop(std::chrono::milliseconds(1000));
#endif
  log->info("stopped");
  return 0;
}

}  // namespace kl
