// WeightStore over a hub-layout checkpoint directory: index/shard resolution, 2-D views of the
// mmapped tensors, and validation against the config's tensor table with every problem reported.
#include "engine/checkpoint/weight_store.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <numeric>
#include <set>
#include <unordered_set>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "engine/core/error.h"
#include "engine/core/log.h"
#include "models/weight_names.h"

namespace fs = std::filesystem;

namespace kl {
namespace {

constexpr const char* kIndexFile = "model.safetensors.index.json";
constexpr const char* kSingleFile = "model.safetensors";
constexpr size_t kMaxListed = 20;  // names listed per problem kind in one error

// "a, b, c (and 7 more)"
std::string list_some(const std::vector<std::string>& items) {
  const size_t shown = std::min(items.size(), kMaxListed);
  std::string out = fmt::format(
      "{}", fmt::join(items.begin(), items.begin() + static_cast<std::ptrdiff_t>(shown), "\n    "));
  if (items.size() > shown) out += fmt::format("\n    ... and {} more", items.size() - shown);
  return out;
}

std::string describe(const std::vector<int64_t>& shape, const std::string& dtype) {
  return fmt::format("{} {}", format_shape(shape), dtype);
}

}  // namespace

LoadFormat parse_load_format(std::string_view s) {
  if (s == "auto") return LoadFormat::kAuto;
  if (s == "dummy") return LoadFormat::kDummy;
  fail("unknown load format '{}' (expected 'auto' or 'dummy')", s);
}

WeightStore::WeightStore(WeightStore&&) noexcept = default;
WeightStore& WeightStore::operator=(WeightStore&&) noexcept = default;
WeightStore::~WeightStore() = default;

void WeightStore::add_tensor(TensorInfo info, const std::byte* data) {
  tensors_.push_back(std::move(info));
  data_.push_back(data);
}

void WeightStore::finalize() {
  std::vector<size_t> order(tensors_.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::sort(order.begin(), order.end(),
            [&](size_t a, size_t b) { return tensors_[a].name < tensors_[b].name; });
  std::vector<TensorInfo> tensors;
  std::vector<const std::byte*> data;
  tensors.reserve(order.size());
  data.reserve(order.size());
  for (size_t i : order) {
    tensors.push_back(std::move(tensors_[i]));
    data.push_back(data_[i]);
  }
  tensors_ = std::move(tensors);
  data_ = std::move(data);
  index_.clear();
  index_.reserve(tensors_.size());
  total_bytes_ = 0;
  for (size_t i = 0; i < tensors_.size(); ++i) {
    if (!index_.emplace(tensors_[i].name, i).second)
      fail("{}: tensor '{}' appears twice", source_, tensors_[i].name);
    total_bytes_ += tensors_[i].nbytes;
  }
}

WeightStore WeightStore::open(const std::string& dir) {
  WeightStore ws;
  ws.source_ = dir;
  if (!fs::is_directory(dir)) fail("{}: checkpoint directory does not exist", dir);
  const fs::path index_path = fs::path(dir) / kIndexFile;
  const fs::path single_path = fs::path(dir) / kSingleFile;

  if (!fs::exists(index_path)) {
    if (!fs::exists(single_path))
      fail("{}: neither {} nor {} found (expected a Hugging Face hub checkpoint)", dir, kIndexFile,
           kSingleFile);
    ws.files_.push_back(SafetensorsFile::open(single_path.string(), true));
    const SafetensorsFile& f = ws.files_.back();
    for (const SafetensorsTensor& t : f.tensors())
      ws.add_tensor(TensorInfo{t.name, t.shape, t.dtype_name, t.dtype, t.nbytes, f.path()},
                    f.data(t));
    ws.finalize();
    return ws;
  }

  // Sharded: the index's weight_map names each tensor's shard.
  const std::string ipath = index_path.string();
  nlohmann::json index;
  {
    std::ifstream in(ipath);
    if (!in) fail("{}: cannot open", ipath);
    try {
      index = nlohmann::json::parse(in);
    } catch (const nlohmann::json::parse_error& e) {
      fail("{}: not valid JSON: {}", ipath, e.what());
    }
  }
  auto wm = index.find("weight_map");
  if (!index.is_object() || wm == index.end() || !wm->is_object())
    fail("{}: field 'weight_map' missing or not an object", ipath);
  std::map<std::string, std::string> weight_map;  // tensor -> shard file name
  std::set<std::string> shard_names;
  for (auto it = wm->begin(); it != wm->end(); ++it) {
    if (!it.value().is_string())
      fail("{}: field 'weight_map.{}': expected a shard file name", ipath, it.key());
    std::string shard = it.value().get<std::string>();
    // Shards must sit beside the index: no paths that could leave the checkpoint directory.
    if (shard.empty() || shard.find('/') != std::string::npos || shard == "." || shard == "..")
      fail("{}: field 'weight_map.{}': '{}' is not a file name in the checkpoint directory", ipath,
           it.key(), shard);
    weight_map.emplace(it.key(), shard);
    shard_names.insert(shard);
  }
  std::vector<std::string> missing_files;
  for (const std::string& s : shard_names)
    if (!fs::exists(fs::path(dir) / s)) missing_files.push_back(s);
  if (!missing_files.empty())
    fail("{}: {} shard file(s) named in weight_map do not exist:\n    {}", ipath,
         missing_files.size(), list_some(missing_files));

  std::vector<std::string> problems;
  std::unordered_map<std::string, std::string> seen;  // tensor -> shard it was found in
  for (const std::string& s : shard_names) {
    ws.files_.push_back(SafetensorsFile::open((fs::path(dir) / s).string(), true));
    const SafetensorsFile& f = ws.files_.back();
    for (const SafetensorsTensor& t : f.tensors()) {
      auto [prev, fresh] = seen.emplace(t.name, s);
      if (!fresh) {
        problems.push_back(fmt::format("'{}' is in both {} and {}", t.name, prev->second, s));
        continue;
      }
      auto m = weight_map.find(t.name);
      if (m == weight_map.end()) {
        problems.push_back(fmt::format("'{}' is in {} but not in weight_map", t.name, s));
      } else if (m->second != s) {
        problems.push_back(
            fmt::format("'{}' is in {} but weight_map says {}", t.name, s, m->second));
      }
      ws.add_tensor(TensorInfo{t.name, t.shape, t.dtype_name, t.dtype, t.nbytes, f.path()},
                    f.data(t));
    }
  }
  for (const auto& [name, shard] : weight_map)
    if (!seen.count(name))
      problems.push_back(
          fmt::format("'{}' is in weight_map ({}) but not in that shard", name, shard));
  if (!problems.empty())
    fail("{}: index and shards disagree ({} problem(s)):\n    {}", ipath, problems.size(),
         list_some(problems));
  ws.finalize();

  // total_size is informational (writers differ on what they count): log, don't fail.
  if (auto md = index.find("metadata"); md != index.end() && md->is_object()) {
    auto ts = md->find("total_size");
    if (ts != md->end() && ts->is_number_unsigned() && ts->get<uint64_t>() != ws.total_bytes_)
      logger("load")->warn("{}: metadata.total_size {} differs from the tensors' {} bytes", ipath,
                           ts->get<uint64_t>(), ws.total_bytes_);
  }
  return ws;
}

WeightStore WeightStore::open(const std::string& dir, const ModelConfig& config) {
  WeightStore ws = open(dir);
  ws.validate(config);
  return ws;
}

WeightStore WeightStore::load(LoadFormat format, const std::string& dir, const ModelConfig& config,
                              uint64_t seed) {
  return format == LoadFormat::kDummy ? dummy(config, seed) : open(dir, config);
}

void WeightStore::validate(const ModelConfig& config) const {
  const std::vector<TensorSpec> expected = expected_tensors(config);
  std::vector<std::string> missing, unexpected, misshaped;
  std::unordered_set<std::string> expected_names;
  expected_names.reserve(expected.size());
  for (const TensorSpec& e : expected) {
    expected_names.insert(e.name);
    auto it = index_.find(e.name);
    if (it == index_.end()) {
      missing.push_back(
          fmt::format("{} {}", e.name, describe(e.shape, std::string(dtype_name(e.dtype)))));
      continue;
    }
    const TensorInfo& t = tensors_[it->second];
    const bool shape_ok = shape_accepted(e, t.shape);
    if (shape_ok && t.dtype) continue;
    std::string want = describe(e.shape, std::string(dtype_name(e.dtype)));
    if (!e.alt_shape.empty()) want += fmt::format(" or {}", format_shape(e.alt_shape));
    misshaped.push_back(fmt::format(
        "{}: stored {} in {}, expected {}{}", e.name, describe(t.shape, t.dtype_name),
        fs::path(t.file).filename().string(), want, t.dtype ? "" : " (unsupported dtype)"));
  }
  for (const TensorInfo& t : tensors_)
    if (!expected_names.count(t.name))
      unexpected.push_back(fmt::format("{} {}", t.name, describe(t.shape, t.dtype_name)));
  if (missing.empty() && unexpected.empty() && misshaped.empty()) return;

  std::string msg = fmt::format(
      "{}: checkpoint does not match the config {} ({} expected tensors, {} stored): {} missing, "
      "{} unexpected, {} misshaped or of unsupported dtype",
      source_, config.source, expected.size(), tensors_.size(), missing.size(), unexpected.size(),
      misshaped.size());
  if (!missing.empty())
    msg += fmt::format("\n  missing ({}):\n    {}", missing.size(), list_some(missing));
  if (!unexpected.empty())
    msg += fmt::format("\n  unexpected ({}):\n    {}", unexpected.size(), list_some(unexpected));
  if (!misshaped.empty())
    msg += fmt::format("\n  misshaped or unsupported dtype ({}):\n    {}", misshaped.size(),
                       list_some(misshaped));
  throw Error(msg);
}

}  // namespace kl
