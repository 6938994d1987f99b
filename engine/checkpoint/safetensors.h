// A read-only memory-mapped safetensors file: header parse and validation (offsets inside the
// file, sizes matching shape x dtype) without touching tensor data, so sparse files open instantly.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "engine/core/dtype.h"

namespace kl {

// A read-only private mapping of a whole file, unmapped on destruction. Move-only.
class MappedFile {
 public:
  MappedFile() = default;
  explicit MappedFile(const std::string& path);
  ~MappedFile();
  MappedFile(MappedFile&& o) noexcept;
  MappedFile& operator=(MappedFile&& o) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const std::byte* data() const { return static_cast<const std::byte*>(addr_); }
  uint64_t size() const { return size_; }

 private:
  void release();
  void* addr_ = nullptr;
  uint64_t size_ = 0;
};

struct SafetensorsTensor {
  std::string name;
  std::string dtype_name;      // as spelled in the header ("BF16", "I8", "F8_E4M3", ...)
  std::optional<DType> dtype;  // set for the dtypes klserve reads (BF16, F16, F32)
  std::vector<int64_t> shape;
  uint64_t offset = 0;  // absolute byte offset in the file
  uint64_t nbytes = 0;
};

class SafetensorsFile {
 public:
  // Maps and parses `path`. Throws kl::Error naming the file (and tensor) on a malformed header,
  // offsets outside the file, size/shape mismatches, and unknown dtypes. Tensors of known but
  // unsupported dtypes (I8, F8_E4M3, ...) are an error too unless `allow_unsupported_dtypes`, in
  // which case they are listed with dtype unset (so a validator can report them with the rest).
  static SafetensorsFile open(const std::string& path, bool allow_unsupported_dtypes = false);

  const std::string& path() const { return path_; }
  uint64_t file_size() const { return map_.size(); }
  const std::vector<SafetensorsTensor>& tensors() const { return tensors_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const SafetensorsTensor* find(const std::string& name) const;
  // Pointer to the tensor's bytes inside the mapping (no copy, no read until dereferenced).
  const std::byte* data(const SafetensorsTensor& t) const { return map_.data() + t.offset; }

 private:
  std::string path_;
  MappedFile map_;
  std::vector<SafetensorsTensor> tensors_;  // in header order
  std::unordered_map<std::string, size_t> by_name_;
  std::map<std::string, std::string> metadata_;
};

// Bytes per element of a safetensors dtype name (0 when the name is not a safetensors dtype).
size_t safetensors_dtype_size(std::string_view name);
// BF16/F16/F32 -> DType; nullopt for anything else.
std::optional<DType> dtype_from_safetensors(std::string_view name);

}  // namespace kl
