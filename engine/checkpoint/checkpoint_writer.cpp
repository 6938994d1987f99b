// Checkpoint writing in the Hugging Face hub layout (safetensors shards with __metadata__
// {"format":"pt"}, index with metadata.total_size and weight_map), dense or sparse.
#include "engine/checkpoint/checkpoint_writer.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "engine/checkpoint/dummy_weights.h"
#include "engine/core/error.h"

namespace fs = std::filesystem;

namespace kl {
namespace {

// Owns a file descriptor for writing; closes it once.
class OutFile {
 public:
  explicit OutFile(const std::string& path) : path_(path) {
    fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd_ < 0) fail("{}: cannot create: {}", path, std::strerror(errno));
  }
  ~OutFile() {
    if (fd_ >= 0) ::close(fd_);
  }
  OutFile(const OutFile&) = delete;
  OutFile& operator=(const OutFile&) = delete;

  void write_all(const void* data, size_t n) {
    const char* p = static_cast<const char*>(data);
    while (n > 0) {
      ssize_t w = ::write(fd_, p, n);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) fail("{}: write failed: {}", path_, std::strerror(errno));
      p += w;
      n -= static_cast<size_t>(w);
    }
  }
  void truncate_to(uint64_t size) {
    if (::ftruncate(fd_, static_cast<off_t>(size)) != 0)
      fail("{}: ftruncate to {} bytes failed: {}", path_, size, std::strerror(errno));
  }
  void close() {
    int fd = fd_;
    fd_ = -1;
    if (::close(fd) != 0) fail("{}: close failed: {}", path_, std::strerror(errno));
  }

 private:
  std::string path_;
  int fd_ = -1;
};

// Splits specs (in order) into num_shards contiguous runs of roughly equal bytes, none empty.
std::vector<size_t> shard_starts(const std::vector<TensorSpec>& specs, int num_shards) {
  uint64_t total = 0;
  for (const TensorSpec& s : specs) total += s.nbytes();
  std::vector<size_t> starts{0};
  uint64_t acc = 0;
  uint64_t target = total / num_shards;  // bytes at which the current shard closes
  for (size_t i = 0; i < specs.size() && static_cast<int>(starts.size()) < num_shards; ++i) {
    acc += specs[i].nbytes();
    const size_t remaining_tensors = specs.size() - (i + 1);
    const size_t remaining_shards = num_shards - starts.size();
    // Close a shard once it reaches its share, or when each later shard needs one tensor left.
    if (remaining_tensors > 0 && (acc >= target || remaining_tensors == remaining_shards)) {
      starts.push_back(i + 1);
      // Re-spread what is left over the shards still to fill (a big tensor overshoots a share).
      target = acc + (total - acc) / (remaining_shards);
    }
  }
  starts.push_back(specs.size());
  return starts;
}

void write_shard(const std::string& path, const std::vector<TensorSpec>& specs, size_t begin,
                 size_t end, const uint64_t* seed) {
  nlohmann::json header = nlohmann::json::object();
  header["__metadata__"] = {{"format", "pt"}};
  uint64_t offset = 0;
  for (size_t i = begin; i < end; ++i) {
    const TensorSpec& s = specs[i];
    header[s.name] = {{"dtype", std::string(dtype_name(s.dtype))},
                      {"shape", s.shape},
                      {"data_offsets", {offset, offset + s.nbytes()}}};
    offset += s.nbytes();
  }
  std::string h = header.dump();
  // Pad with spaces to 8 bytes so the data region is aligned, as the reference writer does.
  h.append((8 - h.size() % 8) % 8, ' ');
  uint8_t len[8];
  for (int b = 0; b < 8; ++b) len[b] = static_cast<uint8_t>(uint64_t(h.size()) >> (8 * b));

  OutFile out(path);
  out.write_all(len, 8);
  out.write_all(h.data(), h.size());
  if (!seed) {
    out.truncate_to(8 + h.size() + offset);
  } else {
    // Offsets follow spec order, so tensors are generated and appended one at a time.
    std::vector<std::byte> buf;
    for (size_t i = begin; i < end; ++i) {
      buf.resize(specs[i].nbytes());
      fill_dummy_tensors({specs[i]}, *seed, {buf.data()});
      out.write_all(buf.data(), buf.size());
    }
  }
  out.close();
}

}  // namespace

std::string shard_file_name(int shard, int num_shards) {
  return fmt::format("model-{:05d}-of-{:05d}.safetensors", shard, num_shards);
}

CheckpointSummary write_checkpoint_tensors(const std::vector<TensorSpec>& specs,
                                           const std::string& out_dir, int num_shards,
                                           const uint64_t* seed) {
  if (num_shards < 1) fail("number of shards must be at least 1, got {}", num_shards);
  if (static_cast<size_t>(num_shards) > specs.size())
    fail("cannot split {} tensors into {} non-empty shards", specs.size(), num_shards);
  std::error_code ec;
  fs::create_directories(out_dir, ec);
  if (ec) fail("{}: cannot create directory: {}", out_dir, ec.message());

  const std::vector<size_t> starts = shard_starts(specs, num_shards);
  CheckpointSummary sum;
  nlohmann::json weight_map = nlohmann::json::object();
  for (int k = 0; k < num_shards; ++k) {
    const std::string name = shard_file_name(k + 1, num_shards);
    const std::string path = (fs::path(out_dir) / name).string();
    write_shard(path, specs, starts[k], starts[k + 1], seed);
    for (size_t i = starts[k]; i < starts[k + 1]; ++i) {
      weight_map[specs[i].name] = name;
      sum.total_bytes += specs[i].nbytes();
    }
    sum.shard_files.push_back(path);
  }
  sum.num_tensors = specs.size();

  nlohmann::json index = {{"metadata", {{"total_size", sum.total_bytes}}},
                          {"weight_map", std::move(weight_map)}};
  const std::string ipath = (fs::path(out_dir) / "model.safetensors.index.json").string();
  std::ofstream out(ipath);
  out << index.dump(2) << "\n";
  if (!out.flush()) fail("{}: write failed", ipath);
  return sum;
}

CheckpointSummary write_random_checkpoint(const nlohmann::json& config_json,
                                          const std::string& config_source,
                                          const std::string& out_dir, uint64_t seed,
                                          int num_shards) {
  const ModelConfig config = parse_model_config(config_json, config_source);
  CheckpointSummary sum =
      write_checkpoint_tensors(expected_tensors(config), out_dir, num_shards, &seed);
  const std::string cpath = (fs::path(out_dir) / "config.json").string();
  std::ofstream out(cpath);
  out << config_json.dump(2) << "\n";
  if (!out.flush()) fail("{}: write failed", cpath);
  return sum;
}

}  // namespace kl
