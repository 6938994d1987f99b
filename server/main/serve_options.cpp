// Flag definitions of `klserve serve`.
#include "server/main/serve_options.h"

#include <CLI/CLI.hpp>

namespace kl {

namespace {

std::string env_name(const std::string& flag) {
  std::string e = "KLSERVE_";
  for (char c : flag.substr(2)) e += c == '-' ? '_' : static_cast<char>(std::toupper(c));
  return e;
}

template <typename T>
CLI::Option* flag(CLI::App& app, const std::string& name, T& value, const std::string& help) {
  return app.add_option(name, value, help)->envname(env_name(name))->capture_default_str();
}

}  // namespace

void add_serve_options(CLI::App& app, ServeOptions& o) {
  app.add_option("model_dir", o.model_dir,
                 "Checkpoint directory in the hub layout (config.json, *.safetensors, "
                 "tiktoken.model); omit for the embedded default model")
      ->envname("KLSERVE_MODEL");
  flag(app, "--host", o.host, "Address to listen on");
  flag(app, "--port", o.port, "HTTP port")->check(CLI::Range(0, 65535));
  flag(app, "--grpc-port", o.grpc_port, "gRPC port (0 disables gRPC)")->check(CLI::Range(0, 65535));
  flag(app, "--served-model-name", o.served_model_name, "Model name clients send in \"model\"");
  flag(app, "--max-model-len", o.max_model_len,
       "Context length (prompt + output); 0 = the model's own")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 24));
  flag(app, "--max-num-seqs", o.max_num_seqs, "Most sequences in one step")
      ->check(CLI::Range(1, 65536));
  flag(app, "--max-num-batched-tokens", o.max_num_batched_tokens, "Token budget of one step")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 24));
  flag(app, "--max-num-waiting", o.max_num_waiting,
       "Requests that may wait beyond the running set; more get 429")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 30));
  flag(app, "--gpu-memory-utilization", o.gpu_memory_utilization,
       "Fraction of GPU memory for weights, activations and caches (--device cuda)")
      ->check(CLI::Range(0.05, 1.0));
  flag(app, "--kv-cache-space", o.kv_cache_space_gib,
       "GiB for MLA pages and KDA state blocks on the CPU (like VLLM_CPU_KVCACHE_SPACE)")
      ->check(CLI::Range(0.001, 4096.0));
  flag(app, "--tensor-parallel-size", o.tensor_parallel_size, "GPUs to shard the model over")
      ->check(CLI::Range(1, 64));
  flag(app, "--dtype", o.dtype, "Activation dtype")
      ->check(CLI::IsMember({"auto", "bfloat16", "float32"}));
  flag(app, "--api-key", o.api_key, "Require \"Authorization: Bearer <key>\" (all but /health)");
  flag(app, "--device", o.device, "Where to run the model")->check(CLI::IsMember({"cpu", "cuda"}));
  flag(app, "--load-format", o.load_format, "auto: read the checkpoint; dummy: random weights")
      ->check(CLI::IsMember({"auto", "dummy"}));
  app.add_flag("--enforce-eager", o.enforce_eager,
               "Launch every GPU step eagerly (no CUDA graphs for decode steps)")
      ->envname("KLSERVE_ENFORCE_EAGER");
  app.add_flag("--skip-tokenizer-init", o.skip_tokenizer_init,
               "Serve token ids only (no tokenizer files needed)")
      ->envname("KLSERVE_SKIP_TOKENIZER_INIT");
  flag(app, "--shutdown-timeout", o.shutdown_timeout,
       "Seconds in-flight requests may take to finish after SIGTERM/SIGINT")
      ->check(CLI::Range(0.0, 86400.0));
  flag(app, "--seed", o.seed, "Seed for the random streams of unseeded requests");
  flag(app, "--log-level", o.log_level, "trace|debug|info|warn|error")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error"}));
  flag(app, "--http-threads", o.http_threads, "HTTP I/O threads")->check(CLI::Range(1, 64));
}

}  // namespace kl
