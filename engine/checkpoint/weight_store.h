// WeightStore: every tensor of a model, by its checkpoint name, either mmapped from a hub-layout
// directory (index + shards, or one model.safetensors) or owned dummy buffers. Opening reads only
// headers; validate() checks names/shapes/dtypes against the config's table and reports all
// problems.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "engine/checkpoint/dummy_weights.h"
#include "engine/checkpoint/safetensors.h"
#include "engine/core/error.h"
#include "engine/core/weight_view.h"
#include "models/model_config.h"

namespace kl {

enum class LoadFormat : uint8_t {
  kAuto,   // read the checkpoint directory
  kDummy,  // seeded random weights in the config's shapes (tests, benchmarks)
};
// "auto" | "dummy"; throws kl::Error otherwise.
LoadFormat parse_load_format(std::string_view s);

struct TensorInfo {
  std::string name;
  std::vector<int64_t> shape;
  std::string dtype_name;      // as stored ("BF16", "F32", "I8", ...)
  std::optional<DType> dtype;  // set when klserve can read it (BF16, F16, F32)
  uint64_t nbytes = 0;
  std::string file;  // the shard holding it ("<dummy>" for dummy weights)
};

class WeightStore {
 public:
  // Opens `dir` (model.safetensors.index.json + shards, or model.safetensors) without validating
  // against a config. Inconsistent indexes (a weight_map entry absent from its shard, a tensor in
  // two shards, a missing shard file) are one error listing the problems.
  static WeightStore open(const std::string& dir);
  // open(dir) then validate(config).
  static WeightStore open(const std::string& dir, const ModelConfig& config);
  // Every tensor of expected_tensors(config) with seeded values
  // (engine/checkpoint/dummy_weights.h); the same seed gives the same bytes.
  static WeightStore dummy(const ModelConfig& config, uint64_t seed);
  static WeightStore load(LoadFormat format, const std::string& dir, const ModelConfig& config,
                          uint64_t seed = 0);
  // The dummy weights as recipes only, for an executor that generates them where they live (the
  // GPU): names, shapes and dtypes as dummy(), views pointing at placeholder addresses that must
  // never be read (bytes() refuses); dummy_recipe_at() says what each tensor holds.
  static WeightStore dummy_layout(const ModelConfig& config, uint64_t seed);
  bool layout_only() const { return layout_only_; }
  // Layout-only stores: the recipe of the tensor whose view data is `data` (nullopt: none).
  std::optional<std::pair<TensorSpec, DummyRecipe>> dummy_recipe_at(const void* data) const;

  WeightStore(WeightStore&&) noexcept;
  WeightStore& operator=(WeightStore&&) noexcept;
  ~WeightStore();

  bool has(const std::string& name) const { return index_.count(name) != 0; }
  // A 2-D view of the stored bytes in their stored dtype. Rule: rows = shape[0] and cols = the
  // product of the remaining dims; a 1-D [n] tensor is rows 1, cols n; a scalar is 1 x 1. So
  // A_log [1,1,H,1] is 1 x H and a conv weight [H*K,1,W] (or [H*K,W]) is H*K x W.
  // Throws kl::Error for an unknown name or an unsupported dtype.
  WeightView get(const std::string& name) const;
  const TensorInfo& info(const std::string& name) const;
  // The raw stored bytes (no conversion).
  std::span<const std::byte> bytes(const std::string& name) const;

  const std::vector<TensorInfo>& tensors() const { return tensors_; }  // sorted by name
  size_t num_tensors() const { return tensors_.size(); }
  uint64_t total_bytes() const { return total_bytes_; }
  const std::string& source() const { return source_; }  // directory, or "dummy(seed=N)"

  // Compares against expected_tensors(config): every missing, unexpected, misshaped or
  // unsupported-dtype tensor in one kl::Error (up to 20 named per kind, with counts). Any of
  // BF16/F16/F32 is accepted wherever one of them is expected, since reads convert through
  // WeightView; conv weights may be 3-D or 2-D.
  void validate(const ModelConfig& config) const;

 private:
  WeightStore() = default;
  void add_tensor(TensorInfo info, const std::byte* data);
  // Sorts tensors by name, builds the index and the byte total; throws on duplicate names.
  void finalize();

  std::string source_;
  std::vector<SafetensorsFile> files_;  // the mappings the views point into
  std::unique_ptr<std::byte[]> owned_;  // dummy weights: one allocation, 64-byte aligned tensors
  std::vector<TensorInfo> tensors_;
  std::vector<const std::byte*> data_;  // parallel to tensors_
  std::unordered_map<std::string, size_t> index_;
  uint64_t total_bytes_ = 0;
  bool layout_only_ = false;
  uint64_t dummy_seed_ = 0;
  std::unordered_map<const void*, TensorSpec> layout_specs_;  // layout-only: view data -> spec
};

// Accessors are inline so that models/ (bind_model_weights) needs no link dependency on engine/.
inline const TensorInfo& WeightStore::info(const std::string& name) const {
  auto it = index_.find(name);
  if (it == index_.end()) fail("{}: no tensor named '{}'", source_, name);
  return tensors_[it->second];
}

inline std::span<const std::byte> WeightStore::bytes(const std::string& name) const {
  const TensorInfo& t = info(name);
  if (layout_only_) fail("{}: tensor '{}' has no bytes in a layout-only store", source_, name);
  return {data_[static_cast<size_t>(&t - tensors_.data())], static_cast<size_t>(t.nbytes)};
}

inline WeightView WeightStore::get(const std::string& name) const {
  const TensorInfo& t = info(name);
  if (!t.dtype)
    fail("{}: tensor '{}' has dtype {}, which klserve cannot read (BF16, F16, F32)", t.file, name,
         t.dtype_name);
  WeightView v;
  v.data = data_[static_cast<size_t>(&t - tensors_.data())];
  v.dtype = *t.dtype;
  v.rows = 1;
  v.cols = 1;
  if (t.shape.size() == 1) {
    v.cols = t.shape[0];
  } else if (t.shape.size() >= 2) {
    v.rows = t.shape[0];
    for (size_t i = 1; i < t.shape.size(); ++i) v.cols *= t.shape[i];
  }
  return v;
}

}  // namespace kl
