// kl-make-checkpoint: writes a random-weight checkpoint in the hub layout (config.json, sharded
// safetensors, index) for any Kimi Linear config.json, deterministically from a seed.
#include <cstdio>
#include <fstream>
#include <string>

#include <fmt/format.h>
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "engine/checkpoint/checkpoint_writer.h"
#include "engine/core/error.h"
#include "models/model_config.h"

int main(int argc, char** argv) {
  CLI::App app{"Write a random-weight Kimi Linear checkpoint (hub layout) from a config.json"};
  std::string config_path, out_dir;
  uint64_t seed = 0;
  int shards = 1;
  bool sparse = false;
  app.add_option("--config", config_path, "input config.json (hub format)")->required();
  app.add_option("--out", out_dir, "output directory (created if needed)")->required();
  app.add_option("--seed", seed, "seed of the random weights")->capture_default_str();
  app.add_option("--shards", shards, "number of safetensors shards")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_flag("--sparse", sparse,
               "write headers only and extend the shards with ftruncate (no data, no disk space)");
  CLI11_PARSE(app, argc, argv);

  try {
    std::ifstream in(config_path);
    if (!in) kl::fail("{}: cannot open", config_path);
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(in);
    } catch (const nlohmann::json::parse_error& e) {
      kl::fail("{}: not valid JSON: {}", config_path, e.what());
    }
    kl::CheckpointSummary sum;
    if (sparse) {
      const kl::ModelConfig config = kl::parse_model_config(j, config_path);
      sum = kl::write_sparse_checkpoint(kl::expected_tensors(config), out_dir, shards);
      std::ofstream(out_dir + "/config.json") << j.dump(2) << "\n";
    } else {
      sum = kl::write_random_checkpoint(j, config_path, out_dir, seed, shards);
    }
    fmt::print("wrote {}: {} tensors, {} bytes in {} shard(s){}\n", out_dir, sum.num_tensors,
               sum.total_bytes, sum.shard_files.size(), sparse ? " (sparse, no data)" : "");
  } catch (const kl::Error& e) {
    fmt::print(stderr, "kl-make-checkpoint: {}\n", e.what());
    return 1;
  }
  return 0;
}
