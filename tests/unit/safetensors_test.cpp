// safetensors reader tests: valid files in BF16/F16/F32, every malformed-header error, unsupported
// dtypes named, header-only parsing of sparse files, and the mapping's RAII release.
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstring>
#include <fstream>
#include <sstream>

#include "engine/checkpoint/safetensors.h"
#include "engine/core/error.h"
#include "tests/support/test_support.h"
#include "tests/unit/checkpoint_fixtures.h"

namespace kl::test {

void write_raw_safetensors(const std::string& path, const std::string& header,
                           uint64_t header_len_field, uint64_t data_bytes, bool sparse) {
  std::string out(8, '\0');
  for (int b = 0; b < 8; ++b) out[b] = static_cast<char>((header_len_field >> (8 * b)) & 0xff);
  out += header;
  if (!sparse)
    for (uint64_t i = 0; i < data_bytes; ++i) out.push_back(static_cast<char>(i % 251));
  write_text_file(path, out);
  if (sparse) REQUIRE(::truncate(path.c_str(), static_cast<off_t>(out.size() + data_bytes)) == 0);
}

void write_raw_safetensors(const std::string& path, const std::vector<RawTensor>& tensors,
                           uint64_t data_bytes, bool sparse) {
  nlohmann::json h = {{"__metadata__", {{"format", "pt"}}}};
  for (const RawTensor& t : tensors)
    h[t.name] = {{"dtype", t.dtype}, {"shape", t.shape}, {"data_offsets", {t.begin, t.end}}};
  std::string s = h.dump();
  write_raw_safetensors(path, s, s.size(), data_bytes, sparse);
}

}  // namespace kl::test

namespace {

using Catch::Matchers::Contains;
using kl::SafetensorsFile;
using kl::test::RawTensor;
using kl::test::TempDir;
using kl::test::write_raw_safetensors;

std::string error_of(const std::string& path, bool allow_unsupported = false) {
  try {
    SafetensorsFile::open(path, allow_unsupported);
  } catch (const kl::Error& e) {
    return e.what();
  }
  return "<no error>";
}

}  // namespace

TEST_CASE("safetensors: a valid file with BF16, F16 and F32 tensors", "[safetensors]") {
  TempDir dir;
  const std::string path = dir.path() + "/ok.safetensors";
  // f32 [2] = {1.5, -2}, bf16 [2,1] = {1, -0.5}, f16 [1] = {2}, and a zero-size tensor.
  std::string data(16, '\0');
  float f[2] = {1.5f, -2.f};
  uint16_t bf[2] = {0x3f80, 0xbf00};
  uint16_t h = 0x4000;
  std::memcpy(&data[0], f, 8);
  std::memcpy(&data[8], bf, 4);
  std::memcpy(&data[12], &h, 2);
  nlohmann::json hdr = {
      {"__metadata__", {{"format", "pt"}}},
      {"a.f32", {{"dtype", "F32"}, {"shape", {2}}, {"data_offsets", {0, 8}}}},
      {"b.bf16", {{"dtype", "BF16"}, {"shape", {2, 1}}, {"data_offsets", {8, 12}}}},
      {"c.f16", {{"dtype", "F16"}, {"shape", {1}}, {"data_offsets", {12, 14}}}},
      {"d.empty", {{"dtype", "F32"}, {"shape", {0, 3}}, {"data_offsets", {14, 14}}}},
      {"e.scalar",
       {{"dtype", "BF16"}, {"shape", nlohmann::json::array()}, {"data_offsets", {14, 16}}}}};
  std::string s = hdr.dump();
  s.append((8 - s.size() % 8) % 8, ' ');
  std::string file(8, '\0');
  for (int b = 0; b < 8; ++b) file[b] = static_cast<char>((s.size() >> (8 * b)) & 0xff);
  kl::test::write_text_file(path, file + s + data);

  SafetensorsFile st = SafetensorsFile::open(path);
  REQUIRE(st.tensors().size() == 5);
  CHECK(st.metadata().at("format") == "pt");
  const kl::SafetensorsTensor* a = st.find("a.f32");
  REQUIRE(a);
  CHECK(a->dtype == kl::DType::kF32);
  CHECK(a->shape == std::vector<int64_t>{2});
  CHECK(a->offset == 8 + s.size());
  CHECK(kl::load_as_f32(st.data(*a), kl::DType::kF32, 1) == -2.f);
  const kl::SafetensorsTensor* b = st.find("b.bf16");
  REQUIRE(b);
  CHECK(b->shape == std::vector<int64_t>{2, 1});
  CHECK(kl::load_as_f32(st.data(*b), kl::DType::kBF16, 0) == 1.f);
  CHECK(kl::load_as_f32(st.data(*b), kl::DType::kBF16, 1) == -0.5f);
  const kl::SafetensorsTensor* c = st.find("c.f16");
  REQUIRE(c);
  CHECK(kl::load_as_f32(st.data(*c), kl::DType::kF16, 0) == 2.f);
  CHECK(st.find("d.empty")->nbytes == 0);
  CHECK(st.find("e.scalar")->nbytes == 2);
  CHECK(st.find("nope") == nullptr);
}

TEST_CASE("safetensors: malformed files are errors naming the file", "[safetensors]") {
  TempDir dir;
  const std::string path = dir.path() + "/bad.safetensors";

  SECTION("shorter than the length prefix") {
    kl::test::write_text_file(path, "abc");
    std::string e = error_of(path);
    CHECK_THAT(e, Contains(path) && Contains("shorter than the 8-byte"));
  }
  SECTION("truncated header") {
    write_raw_safetensors(path, "{\"__metadata__\":{}}", 1000, 0);
    CHECK_THAT(error_of(path), Contains(path) && Contains("truncated header"));
  }
  SECTION("absurd header length") {
    write_raw_safetensors(path, "{}", uint64_t(1) << 40, 0);
    CHECK_THAT(error_of(path), Contains("100 MB"));
  }
  SECTION("header is not JSON") {
    write_raw_safetensors(path, "{not json", 9, 0);
    CHECK_THAT(error_of(path), Contains(path) && Contains("not valid JSON"));
  }
  SECTION("offsets past the end of the file") {
    write_raw_safetensors(path, {{"w", "F32", {4}, 0, 16}}, 8);
    CHECK_THAT(error_of(path), Contains("'w'") && Contains("past the end"));
  }
  SECTION("offsets that disagree with shape x dtype") {
    write_raw_safetensors(path, {{"w", "F32", {2, 2}, 0, 8}}, 16);
    CHECK_THAT(error_of(path), Contains("'w'") && Contains("needs 16"));
  }
  SECTION("offsets reversed") {
    write_raw_safetensors(path, {{"w", "F32", {0}, 8, 4}}, 16);
    CHECK_THAT(error_of(path), Contains("'w'") && Contains("end before they begin"));
  }
  SECTION("overlapping tensors") {
    write_raw_safetensors(path, {{"a", "F32", {2}, 0, 8}, {"b", "F32", {2}, 4, 12}}, 16);
    CHECK_THAT(error_of(path), Contains("overlap"));
  }
  SECTION("negative shape entry") {
    const std::string h = R"({"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})";
    write_raw_safetensors(path, h, h.size(), 4);
    CHECK_THAT(error_of(path), Contains("'w'") && Contains("shape"));
  }
  SECTION("missing dtype") {
    const std::string h = R"({"w":{"shape":[1],"data_offsets":[0,4]}})";
    write_raw_safetensors(path, h, h.size(), 4);
    CHECK_THAT(error_of(path), Contains("'w'") && Contains("dtype"));
  }
  SECTION("unknown dtype name") {
    write_raw_safetensors(path, {{"w", "Q4_K", {4}, 0, 4}}, 4);
    CHECK_THAT(error_of(path, true), Contains("'w'") && Contains("unknown dtype 'Q4_K'"));
  }
  SECTION("missing file") {
    CHECK_THAT(error_of(dir.path() + "/absent.safetensors"), Contains("absent.safetensors"));
  }
}

TEST_CASE("safetensors: unsupported dtypes are named with tensor and file", "[safetensors]") {
  TempDir dir;
  const std::string path = dir.path() + "/q.safetensors";
  write_raw_safetensors(path,
                        {{"layer.qweight", "I8", {4, 4}, 0, 16},
                         {"layer.fp8", "F8_E4M3", {16}, 16, 32},
                         {"layer.ok", "BF16", {8}, 32, 48}},
                        48);
  const std::string e = error_of(path);
  CHECK_THAT(e, Contains(path));
  CHECK_THAT(e, Contains("'layer.qweight' (I8)"));
  CHECK_THAT(e, Contains("'layer.fp8' (F8_E4M3)"));
  CHECK_THAT(e, Contains("BF16, F16, F32"));

  // A validator may ask for them to be listed instead (offsets are still checked).
  SafetensorsFile st = SafetensorsFile::open(path, true);
  REQUIRE(st.find("layer.qweight"));
  CHECK_FALSE(st.find("layer.qweight")->dtype.has_value());
  CHECK(st.find("layer.qweight")->dtype_name == "I8");
  CHECK(st.find("layer.ok")->dtype == kl::DType::kBF16);
}

TEST_CASE("safetensors: opening a sparse file reads only the header", "[safetensors]") {
  TempDir dir;
  const std::string path = dir.path() + "/big.safetensors";
  const uint64_t n = uint64_t(4) << 30;  // 4 GiB of hole
  write_raw_safetensors(path, {{"huge", "BF16", {int64_t(n / 2)}, 0, n}}, n, /*sparse=*/true);
  SafetensorsFile st = SafetensorsFile::open(path);
  CHECK(st.file_size() > n);
  CHECK(st.find("huge")->nbytes == n);
  struct stat sb;
  REQUIRE(::stat(path.c_str(), &sb) == 0);
  CHECK(sb.st_blocks * 512 < (1 << 20));  // still a hole: nothing was written or read in
}

TEST_CASE("safetensors: the mapping is released with the object", "[safetensors]") {
  TempDir dir;
  const std::string path = dir.path() + "/m.safetensors";
  write_raw_safetensors(path, {{"w", "F32", {2}, 0, 8}}, 8);
  auto mapped = [&] {
    std::ifstream maps("/proc/self/maps");
    std::stringstream ss;
    ss << maps.rdbuf();
    return ss.str().find(path) != std::string::npos;
  };
  {
    SafetensorsFile st = SafetensorsFile::open(path);
    SafetensorsFile moved = std::move(st);
    CHECK(moved.find("w"));
    CHECK(mapped());
  }
  CHECK_FALSE(mapped());
}
