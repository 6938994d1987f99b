// Options of `klserve serve`, with vLLM's flag names; every flag can also be set through an
// environment variable KLSERVE_<FLAG> (upper case, '-' -> '_'), e.g. KLSERVE_PORT=8001.
#pragma once

#include <cstdint>
#include <string>

namespace CLI {
class App;
}

namespace kl {

struct ServeOptions {
  std::string model_dir;  // empty: the embedded default model
  std::string host = "0.0.0.0";
  int port = 8000;
  int grpc_port = 50051;          // 0: no gRPC server
  std::string served_model_name;  // default: the directory name, or "klserve-default"
  int64_t max_model_len = 0;      // 0: the model's own limit (capped by the cache)
  int max_num_seqs = 256;
  int64_t max_num_batched_tokens = 8192;
  int64_t max_num_waiting = 1024;
  double gpu_memory_utilization = 0.9;
  double kv_cache_space_gib = 2.0;  // CPU: memory for MLA pages + KDA state blocks
  int tensor_parallel_size = 1;
  std::string dtype = "auto";  // auto | bfloat16 | float32
  bool enforce_eager = false;  // --device cuda: no CUDA graphs
  std::string api_key;
  std::string device = "cpu";        // cpu | cuda
  std::string load_format = "auto";  // auto | dummy
  bool skip_tokenizer_init = false;
  double shutdown_timeout = 30.0;  // seconds to let in-flight requests finish
  uint64_t seed = 0;               // seeds of unseeded requests
  std::string log_level = "info";
  int http_threads = 2;
};

// Registers the flags (and their environment variables) on `app`.
void add_serve_options(CLI::App& app, ServeOptions& o);

}  // namespace kl
