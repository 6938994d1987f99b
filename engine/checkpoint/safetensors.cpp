// safetensors reading: mmap (read-only), then the 8-byte little-endian header length and the JSON
// header. Only header bytes are read here; tensor pages are faulted in by whoever reads them.
#include "engine/checkpoint/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "engine/core/error.h"

namespace kl {
namespace {

// The safetensors format caps the header at 100 MB; a larger length means a corrupt file.
constexpr uint64_t kMaxHeaderBytes = 100ull << 20;

struct DTypeEntry {
  std::string_view name;
  size_t size;
};
// Every dtype the safetensors format defines, so offsets of unsupported tensors can still be
// checked. (Sub-byte F4/F6 formats are not listed: their sizes are not whole bytes.)
constexpr DTypeEntry kDTypes[] = {
    {"BOOL", 1}, {"U8", 1},  {"I8", 1},  {"F8_E5M2", 1}, {"F8_E4M3", 1}, {"F8_E8M0", 1},
    {"I16", 2},  {"U16", 2}, {"F16", 2}, {"BF16", 2},    {"I32", 4},     {"U32", 4},
    {"F32", 4},  {"I64", 8}, {"U64", 8}, {"F64", 8},     {"C64", 8},
};

std::string errno_text() {
  return std::strerror(errno);
}

}  // namespace

size_t safetensors_dtype_size(std::string_view name) {
  for (const DTypeEntry& e : kDTypes)
    if (e.name == name) return e.size;
  return 0;
}

std::optional<DType> dtype_from_safetensors(std::string_view name) {
  if (name == "BF16") return DType::kBF16;
  if (name == "F16") return DType::kF16;
  if (name == "F32") return DType::kF32;
  return std::nullopt;
}

MappedFile::MappedFile(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail("{}: cannot open: {}", path, errno_text());
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    std::string why = errno_text();
    ::close(fd);
    fail("{}: cannot stat: {}", path, why);
  }
  size_ = static_cast<uint64_t>(st.st_size);
  if (size_ > 0) {
    // MAP_PRIVATE + PROT_READ: nothing is read until a page is touched, and a read-only private
    // mapping is not charged against overcommit, so a 98 GB checkpoint maps for free.
    void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      std::string why = errno_text();
      ::close(fd);
      fail("{}: cannot mmap {} bytes: {}", path, size_, why);
    }
    addr_ = p;
  }
  ::close(fd);  // the mapping keeps the file referenced
}

MappedFile::~MappedFile() {
  release();
}

MappedFile::MappedFile(MappedFile&& o) noexcept : addr_(o.addr_), size_(o.size_) {
  o.addr_ = nullptr;
  o.size_ = 0;
}

MappedFile& MappedFile::operator=(MappedFile&& o) noexcept {
  if (this != &o) {
    release();
    addr_ = o.addr_;
    size_ = o.size_;
    o.addr_ = nullptr;
    o.size_ = 0;
  }
  return *this;
}

void MappedFile::release() {
  if (addr_) ::munmap(addr_, size_);
  addr_ = nullptr;
  size_ = 0;
}

SafetensorsFile SafetensorsFile::open(const std::string& path, bool allow_unsupported_dtypes) {
  using nlohmann::json;
  SafetensorsFile f;
  f.path_ = path;
  f.map_ = MappedFile(path);
  const uint64_t size = f.map_.size();
  if (size < 8)
    fail("{}: not a safetensors file: {} bytes, shorter than the 8-byte header length", path, size);

  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i)  // little-endian, independent of the host's byte order
    header_len = (header_len << 8) | static_cast<uint8_t>(f.map_.data()[i]);
  if (header_len > kMaxHeaderBytes)
    fail("{}: header length {} exceeds the format's 100 MB limit (corrupt file?)", path,
         header_len);
  if (header_len > size - 8)
    fail("{}: truncated header: header length {} but only {} bytes follow", path, header_len,
         size - 8);

  const char* hbegin = reinterpret_cast<const char*>(f.map_.data() + 8);
  json header;
  try {
    header = json::parse(hbegin, hbegin + header_len);
  } catch (const json::parse_error& e) {
    fail("{}: header is not valid JSON: {}", path, e.what());
  }
  if (!header.is_object()) fail("{}: header is not a JSON object", path);

  const uint64_t data_begin = 8 + header_len;
  const uint64_t data_size = size - data_begin;
  std::vector<std::string> unsupported;
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const json& v = it.value();
    if (name == "__metadata__") {
      if (!v.is_object()) fail("{}: __metadata__ is not an object", path);
      for (auto m = v.begin(); m != v.end(); ++m) {
        if (!m.value().is_string())
          fail("{}: __metadata__ value '{}' is not a string", path, m.key());
        f.metadata_[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    auto bad = [&](const std::string& what) -> void {
      fail("{}: tensor '{}': {}", path, name, what);
    };
    if (!v.is_object()) bad("header entry is not an object");
    SafetensorsTensor t;
    t.name = name;
    auto dt = v.find("dtype");
    if (dt == v.end() || !dt->is_string()) bad("missing or non-string 'dtype'");
    t.dtype_name = dt->get<std::string>();
    const size_t esize = safetensors_dtype_size(t.dtype_name);
    if (esize == 0) bad(fmt::format("unknown dtype '{}'", t.dtype_name));
    t.dtype = dtype_from_safetensors(t.dtype_name);
    if (!t.dtype) unsupported.push_back(fmt::format("'{}' ({})", name, t.dtype_name));

    auto sh = v.find("shape");
    if (sh == v.end() || !sh->is_array()) bad("missing or non-list 'shape'");
    uint64_t numel = 1;
    for (const json& d : *sh) {
      if (!d.is_number_unsigned())
        bad(fmt::format("shape {} has a non-integer or negative entry", sh->dump()));
      uint64_t dim = d.get<uint64_t>();
      if (dim > uint64_t(INT64_MAX) || __builtin_mul_overflow(numel, dim, &numel))
        bad(fmt::format("shape {} overflows", sh->dump()));
      t.shape.push_back(static_cast<int64_t>(dim));
    }
    uint64_t expected_bytes = 0;
    if (__builtin_mul_overflow(numel, uint64_t(esize), &expected_bytes))
      bad(fmt::format("shape {} overflows", sh->dump()));

    auto off = v.find("data_offsets");
    if (off == v.end() || !off->is_array() || off->size() != 2 || !(*off)[0].is_number_unsigned() ||
        !(*off)[1].is_number_unsigned())
      bad("'data_offsets' must be a list of two non-negative integers");
    const uint64_t b = (*off)[0].get<uint64_t>(), e = (*off)[1].get<uint64_t>();
    if (b > e) bad(fmt::format("data_offsets [{}, {}] end before they begin", b, e));
    if (e > data_size)
      bad(fmt::format(
          "data_offsets [{}, {}] run past the end of the data ({} bytes; file {} bytes)", b, e,
          data_size, size));
    if (e - b != expected_bytes)
      bad(fmt::format("data_offsets [{}, {}] hold {} bytes but shape {} x {} needs {}", b, e, e - b,
                      sh->dump(), t.dtype_name, expected_bytes));
    t.offset = data_begin + b;
    t.nbytes = expected_bytes;
    f.by_name_.emplace(name, f.tensors_.size());
    f.tensors_.push_back(std::move(t));
  }
  if (!unsupported.empty() && !allow_unsupported_dtypes) {
    const size_t shown = std::min<size_t>(unsupported.size(), 10);
    fail("{}: {} tensor(s) with unsupported dtype (klserve reads BF16, F16, F32): {}{}", path,
         unsupported.size(),
         fmt::join(unsupported.begin(), unsupported.begin() + static_cast<std::ptrdiff_t>(shown),
                   ", "),
         unsupported.size() > shown ? ", ..." : "");
  }

  // Overlapping tensors mean a corrupt or hand-edited header.
  std::vector<const SafetensorsTensor*> order;
  for (const auto& t : f.tensors_)
    if (t.nbytes > 0) order.push_back(&t);  // empty tensors may share any offset
  std::sort(order.begin(), order.end(), [](auto* a, auto* b) { return a->offset < b->offset; });
  for (size_t i = 1; i < order.size(); ++i) {
    if (order[i]->offset < order[i - 1]->offset + order[i - 1]->nbytes)
      fail("{}: tensors '{}' and '{}' overlap in the data region", path, order[i - 1]->name,
           order[i]->name);
  }
  return f;
}

const SafetensorsTensor* SafetensorsFile::find(const std::string& name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : &tensors_[it->second];
}

}  // namespace kl
