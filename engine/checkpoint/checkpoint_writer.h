// Writes hub-layout checkpoints: config.json, model-0000i-of-0000N.safetensors shards and
// model.safetensors.index.json. Random weights come from the dummy generator; sparse checkpoints
// (headers + ftruncate, no data) exercise the loader at full scale without the disk space.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "models/model_config.h"
#include "models/weight_names.h"

namespace kl {

struct CheckpointSummary {
  std::vector<std::string> shard_files;  // paths, in shard order
  size_t num_tensors = 0;
  uint64_t total_bytes = 0;  // tensor bytes (= the index's metadata.total_size)
};

// "model-00003-of-00020.safetensors"
std::string shard_file_name(int shard, int num_shards);

// Writes `specs` into `out_dir` (created if needed) as `num_shards` safetensors files of roughly
// equal size, keeping the spec order, plus the index. With `seed` set, tensor data are the dummy
// generator's values for that seed; without, each shard gets only its header and is extended with
// ftruncate, so the data region is a hole (reads as zeros, takes no disk space).
CheckpointSummary write_checkpoint_tensors(const std::vector<TensorSpec>& specs,
                                           const std::string& out_dir, int num_shards,
                                           const uint64_t* seed);

inline CheckpointSummary write_sparse_checkpoint(const std::vector<TensorSpec>& specs,
                                                 const std::string& out_dir, int num_shards) {
  return write_checkpoint_tensors(specs, out_dir, num_shards, nullptr);
}

// A complete random-weight checkpoint for a hub config: validates it, writes config.json (the
// input, re-serialised) and every tensor of expected_tensors() with WeightStore::dummy's values
// for `seed`, so WeightStore::open(out_dir) reads back the same bytes as WeightStore::dummy.
CheckpointSummary write_random_checkpoint(const nlohmann::json& config_json,
                                          const std::string& config_source,
                                          const std::string& out_dir, uint64_t seed,
                                          int num_shards);

}  // namespace kl
