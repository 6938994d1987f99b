// Full-size layout: our tensor table for the released config must equal the independent golden
// layout (HF module definitions), and a sparse 20-shard checkpoint of it must open and validate
// without reading tensor data.
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <map>

#include "engine/checkpoint/checkpoint_writer.h"
#include "engine/checkpoint/weight_store.h"
#include "models/model_config.h"
#include "models/weight_names.h"
#include "tests/support/test_support.h"
#include "tests/unit/checkpoint_fixtures.h"

namespace {

struct Entry {
  std::vector<int64_t> shape;
  std::string dtype;
  bool operator==(const Entry&) const = default;
};

kl::DType parse_dtype(const std::string& s) {
  if (s == "BF16") return kl::DType::kBF16;
  if (s == "F32") return kl::DType::kF32;
  if (s == "F16") return kl::DType::kF16;
  FAIL("layout dtype " << s);
  return kl::DType::kF32;
}

}  // namespace

TEST_CASE("full layout: Kimi-Linear-48B-A3B from a sparse 20-shard checkpoint",
          "[checkpoint][full]") {
  auto golden = kl::test::golden_dir();
  if (!golden) {
    WARN("golden data not found (KL_GOLDEN_DIR or ../shared/golden): full layout not checked");
    return;
  }
  const auto t0 = std::chrono::steady_clock::now();
  const nlohmann::json layout =
      kl::test::read_json_file(*golden + "/kimi_linear_48b_a3b_layout.json");
  const kl::ModelConfig config = kl::load_model_config(kl::test::real_config_path());

  std::map<std::string, Entry> golden_map;
  std::vector<kl::TensorSpec> golden_specs;
  for (auto it = layout["tensors"].begin(); it != layout["tensors"].end(); ++it) {
    Entry e{it.value()["shape"].get<std::vector<int64_t>>(),
            it.value()["dtype"].get<std::string>()};
    golden_specs.push_back(kl::TensorSpec{it.key(), e.shape, parse_dtype(e.dtype)});
    golden_map.emplace(it.key(), std::move(e));
  }
  REQUIRE(golden_specs.size() == layout["num_tensors"].get<size_t>());
  REQUIRE(golden_specs.size() == 20493);

  SECTION("our name table reproduces the layout exactly") {
    std::map<std::string, Entry> ours;
    for (const kl::TensorSpec& s : kl::expected_tensors(config))
      CHECK(ours.emplace(s.name, Entry{s.shape, std::string(kl::dtype_name(s.dtype))}).second);
    CHECK(ours.size() == golden_map.size());
    int reported = 0;
    for (const auto& [name, e] : golden_map) {
      auto it = ours.find(name);
      if ((it == ours.end() || !(it->second == e)) && reported++ < 10)
        FAIL_CHECK("layout tensor "
                   << name << " " << kl::format_shape(e.shape) << " " << e.dtype
                   << (it == ours.end() ? ": not in our table"
                                        : ": ours " + kl::format_shape(it->second.shape) + " " +
                                              it->second.dtype));
    }
    for (const auto& [name, e] : ours)
      if (!golden_map.count(name) && reported++ < 20)
        FAIL_CHECK("extra tensor in our table: " << name);
    CHECK(reported == 0);
  }

  SECTION("a sparse checkpoint of the layout opens and validates without reading data") {
    kl::test::TempDir dir;
    const kl::CheckpointSummary sum = kl::write_sparse_checkpoint(golden_specs, dir.path(), 20);
    REQUIRE(sum.shard_files.size() == 20);
    CHECK(sum.total_bytes == layout["total_bytes"].get<uint64_t>());
    uint64_t disk = 0, apparent = 0;
    for (const std::string& f : sum.shard_files) {
      struct stat sb;
      REQUIRE(::stat(f.c_str(), &sb) == 0);
      disk += static_cast<uint64_t>(sb.st_blocks) * 512;
      apparent += static_cast<uint64_t>(sb.st_size);
    }
    CHECK(apparent > sum.total_bytes);
    CHECK(disk < (uint64_t(64) << 20));  // headers only: the data regions are holes

    const kl::WeightStore ws = kl::WeightStore::open(dir.path(), config);  // validates
    CHECK(ws.num_tensors() == 20493);
    CHECK(ws.total_bytes() == 98245528576ull);
    CHECK(ws.info("model.layers.0.self_attn.A_log").file == sum.shard_files.front());
    CHECK(ws.get("model.layers.26.self_attn.kv_b_proj.weight").rows == 8192);

    // No data page was faulted in: count the resident pages of the largest tensor's range.
    auto bytes = ws.bytes("lm_head.weight");
    const uintptr_t page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
    const uintptr_t lo = reinterpret_cast<uintptr_t>(bytes.data()) / page * page;
    const uintptr_t hi = reinterpret_cast<uintptr_t>(bytes.data()) + bytes.size();
    std::vector<unsigned char> resident((hi - lo + page - 1) / page);
    REQUIRE(::mincore(reinterpret_cast<void*>(lo), hi - lo, resident.data()) == 0);
    size_t num_resident = 0;
    for (unsigned char r : resident) num_resident += r & 1;
    CHECK(num_resident <= resident.size() / 100);
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  CHECK(secs < 30.0);  // normally well under a second or two; a data read would take minutes
}
