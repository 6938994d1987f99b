// Checkpoint loading: the tensor table, dummy weights (determinism, magnitudes), the writer round
// trip, WeightStore validation reporting every problem at once, index checks, and tiny-a.
#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>

#include <fmt/format.h>

#include "engine/checkpoint/checkpoint_writer.h"
#include "engine/checkpoint/dummy_weights.h"
#include "engine/checkpoint/safetensors.h"
#include "engine/checkpoint/weight_store.h"
#include "engine/core/error.h"
#include "models/model_weights.h"
#include "models/weight_names.h"
#include "tests/support/test_support.h"
#include "tests/unit/checkpoint_fixtures.h"

namespace fs = std::filesystem;
using Catch::Matchers::Contains;
using kl::test::TempDir;

namespace {

kl::ModelConfig small_config() {
  return kl::parse_model_config(kl::test::small_config_json(), "small.json");
}

const kl::TensorSpec& spec_named(const std::vector<kl::TensorSpec>& specs, const std::string& n) {
  for (const auto& s : specs)
    if (s.name == n) return s;
  FAIL("no spec " << n);
  throw;
}

std::string validation_error(const kl::WeightStore& ws, const kl::ModelConfig& c) {
  try {
    ws.validate(c);
  } catch (const kl::Error& e) {
    return e.what();
  }
  return "<no error>";
}

std::vector<float> values(const kl::WeightStore& ws, const std::string& name) {
  kl::WeightView v = ws.get(name);
  std::vector<float> out(static_cast<size_t>(v.numel()));
  for (int64_t i = 0; i < v.numel(); ++i) out[static_cast<size_t>(i)] = v.at(i);
  return out;
}

}  // namespace

TEST_CASE("weight names: the table for a small config", "[checkpoint]") {
  const kl::ModelConfig c = small_config();
  const auto specs = kl::expected_tensors(c);
  // globals 3 + norms 2x4 + KDA 3x15 + MLA 5 + dense 3 + MoE 3x(2 + 4x3 + 3)
  CHECK(specs.size() == 3 + 8 + 45 + 5 + 3 + 3 * 17);
  CHECK(spec_named(specs, "model.layers.0.self_attn.A_log").shape ==
        std::vector<int64_t>{1, 1, 2, 1});
  CHECK(spec_named(specs, "model.layers.0.self_attn.A_log").dtype == kl::DType::kF32);
  CHECK(spec_named(specs, "model.layers.1.self_attn.dt_bias").shape == std::vector<int64_t>{16});
  CHECK(spec_named(specs, "model.layers.1.self_attn.dt_bias").dtype == kl::DType::kF32);
  const auto& conv = spec_named(specs, "model.layers.3.self_attn.v_conv1d.weight");
  CHECK(conv.shape == std::vector<int64_t>{16, 1, 4});
  CHECK(conv.alt_shape == std::vector<int64_t>{16, 4});
  CHECK(spec_named(specs, "model.layers.2.self_attn.q_proj.weight").shape ==
        std::vector<int64_t>{2 * 12, 32});
  CHECK(spec_named(specs, "model.layers.2.self_attn.kv_b_proj.weight").shape ==
        std::vector<int64_t>{2 * 16, 16});
  CHECK(
      spec_named(specs, "model.layers.1.block_sparse_moe.shared_experts.down_proj.weight").shape ==
      std::vector<int64_t>{32, 32});
  CHECK(spec_named(specs, "model.layers.1.block_sparse_moe.experts.3.w2.weight").shape ==
        std::vector<int64_t>{32, 16});
  CHECK(spec_named(specs, "model.layers.0.mlp.down_proj.weight").shape ==
        std::vector<int64_t>{32, 48});
  CHECK(spec_named(specs, "lm_head.weight").dtype == kl::DType::kBF16);

  nlohmann::json j = kl::test::small_config_json();
  j["tie_word_embeddings"] = true;
  j["num_shared_experts"] = 0;
  const auto tied = kl::expected_tensors(kl::parse_model_config(j, "tied.json"));
  CHECK(tied.size() == specs.size() - 1 - 3 * 3);
  for (const auto& s : tied) {
    CHECK(s.name != "lm_head.weight");
    CHECK(s.name.find("shared_experts") == std::string::npos);
  }
}

TEST_CASE("dummy weights: deterministic, seed-dependent, realistic", "[checkpoint]") {
  const kl::ModelConfig c = small_config();
  const kl::WeightStore a = kl::WeightStore::dummy(c, 7);
  const kl::WeightStore b = kl::WeightStore::dummy(c, 7);
  const kl::WeightStore other = kl::WeightStore::dummy(c, 8);
  REQUIRE_NOTHROW(a.validate(c));
  REQUIRE(a.num_tensors() == kl::expected_tensors(c).size());
  size_t differing = 0;
  for (const kl::TensorInfo& t : a.tensors()) {
    auto x = a.bytes(t.name), y = b.bytes(t.name), z = other.bytes(t.name);
    REQUIRE(x.size() == t.nbytes);
    CHECK(std::memcmp(x.data(), y.data(), x.size()) == 0);
    differing += std::memcmp(x.data(), z.data(), x.size()) != 0;
  }
  CHECK(differing == a.num_tensors());

  for (float v : values(a, "model.layers.2.input_layernorm.weight"))
    CHECK((v >= 0.5f && v <= 1.5f));
  for (float v : values(a, "model.layers.0.self_attn.A_log"))
    CHECK((v >= 0.f && v <= std::log(16.f) + 1e-6f));
  // A normal tensor's moments match its recipe (std 1/sqrt(fan_in) for a linear weight).
  const auto emb = values(a, std::string(kl::kEmbedTokensName));
  double m = 0, m2 = 0;
  for (float v : emb) {
    m += v;
    m2 += double(v) * v;
  }
  m /= emb.size();
  CHECK(std::abs(m) < 0.1);
  CHECK(std::sqrt(m2 / emb.size() - m * m) == Approx(1.0).epsilon(0.08));
  const auto w = values(a, "model.layers.0.mlp.down_proj.weight");  // fan_in 48
  double s2 = 0;
  for (float v : w) s2 += double(v) * v;
  CHECK(std::sqrt(s2 / w.size()) == Approx(1 / std::sqrt(48.0)).epsilon(0.1));

  // Element values do not depend on how a tensor is split into ranges (thread split, GPU).
  const kl::TensorSpec spec{"model.layers.0.mlp.up_proj.weight", {48, 32}};
  const kl::DummyRecipe r = kl::dummy_recipe(spec, 7);
  std::vector<uint16_t> whole(48 * 32), parts(48 * 32);
  kl::fill_dummy_range(spec, r, 0, 48 * 32, whole.data());
  kl::fill_dummy_range(spec, r, 0, 5, parts.data());
  kl::fill_dummy_range(spec, r, 5, 1001, parts.data());
  kl::fill_dummy_range(spec, r, 1001, 48 * 32, parts.data());
  CHECK(whole == parts);
  CHECK(kl::f32_to_bf16(kl::dummy_value(r, 777)) == whole[777]);
  CHECK(std::memcmp(whole.data(), a.bytes(spec.name).data(), whole.size() * 2) == 0);
}

TEST_CASE("bind_model_weights: views follow the layer plan and the 2-D rule", "[checkpoint]") {
  const kl::ModelConfig c = small_config();
  const kl::WeightStore ws = kl::WeightStore::dummy(c, 3);
  const kl::ModelWeights mw = kl::bind_model_weights(c, ws);
  REQUIRE(mw.layers.size() == 4);
  CHECK(mw.embed_tokens.rows == 96);
  CHECK(mw.embed_tokens.cols == 32);
  CHECK(mw.final_norm.rows == 1);
  CHECK(mw.final_norm.cols == 32);
  const kl::KdaWeights& k = mw.layers[0].kda;
  CHECK((k.a_log.rows == 1 && k.a_log.cols == 2 && k.a_log.dtype == kl::DType::kF32));
  CHECK((k.dt_bias.rows == 1 && k.dt_bias.cols == 16 && k.dt_bias.dtype == kl::DType::kF32));
  CHECK((k.q_conv.rows == 16 && k.q_conv.cols == 4));
  CHECK((k.o_norm.rows == 1 && k.o_norm.cols == 8));
  CHECK((k.f_b_proj.rows == 16 && k.f_b_proj.cols == 8));
  const kl::MlaWeights& mla = mw.layers[2].mla;
  CHECK((mla.kv_a_proj_with_mqa.rows == 20 && mla.kv_a_layernorm.cols == 16));
  CHECK((mw.layers[0].dense.down_proj.rows == 32 && mw.layers[0].dense.down_proj.cols == 48));
  const kl::MoeWeights& moe = mw.layers[1].moe;
  CHECK(moe.w1.size() == 4);
  CHECK(moe.has_shared);
  CHECK((moe.shared.gate_proj.rows == 32 && moe.correction_bias.cols == 4));
  CHECK(mw.lm_head.data != mw.embed_tokens.data);

  nlohmann::json j = kl::test::small_config_json();
  j["tie_word_embeddings"] = true;
  const kl::ModelConfig tied = kl::parse_model_config(j, "tied.json");
  const kl::WeightStore wt = kl::WeightStore::dummy(tied, 3);
  CHECK(kl::bind_model_weights(tied, wt).lm_head.data ==
        kl::bind_model_weights(tied, wt).embed_tokens.data);
}

TEST_CASE("checkpoint writer: random checkpoint round trip", "[checkpoint]") {
  TempDir dir;
  const std::string out = dir.path() + "/ckpt";
  const nlohmann::json j = kl::test::small_config_json();
  const kl::CheckpointSummary sum = kl::write_random_checkpoint(j, "small.json", out, 11, 3);
  REQUIRE(sum.shard_files.size() == 3);
  CHECK(fs::path(sum.shard_files[2]).filename() == "model-00003-of-00003.safetensors");

  const kl::ModelConfig c = kl::load_model_config(out + "/config.json");
  CHECK(kl::test::read_json_file(out + "/config.json") == j);
  const nlohmann::json index = kl::test::read_json_file(out + "/model.safetensors.index.json");
  CHECK(index["metadata"]["total_size"].get<uint64_t>() == sum.total_bytes);
  CHECK(index["weight_map"].size() == sum.num_tensors);
  for (const std::string& f : sum.shard_files) {
    kl::SafetensorsFile st = kl::SafetensorsFile::open(f);
    CHECK(st.metadata().at("format") == "pt");
    CHECK(!st.tensors().empty());
    uint64_t data_begin = UINT64_MAX;
    for (const auto& t : st.tensors()) data_begin = std::min(data_begin, t.offset);
    CHECK(data_begin % 8 == 0);  // the header is padded so the data region is 8-byte aligned
  }

  const kl::WeightStore loaded = kl::WeightStore::open(out, c);
  const kl::WeightStore ref = kl::WeightStore::dummy(c, 11);
  REQUIRE(loaded.num_tensors() == ref.num_tensors());
  CHECK(loaded.total_bytes() == sum.total_bytes);
  for (const kl::TensorInfo& t : ref.tensors()) {
    INFO(t.name);
    REQUIRE(loaded.has(t.name));
    CHECK(loaded.info(t.name).shape == t.shape);
    CHECK(loaded.info(t.name).dtype_name == t.dtype_name);
    auto x = loaded.bytes(t.name), y = ref.bytes(t.name);
    REQUIRE(x.size() == y.size());
    CHECK(std::memcmp(x.data(), y.data(), x.size()) == 0);
  }
  CHECK_NOTHROW(kl::WeightStore::load(kl::LoadFormat::kAuto, out, c));
  CHECK(kl::WeightStore::load(kl::LoadFormat::kDummy, "", c, 11).source() == "dummy(seed=11)");
  CHECK(kl::parse_load_format("dummy") == kl::LoadFormat::kDummy);
  CHECK_THROWS_WITH(kl::parse_load_format("pt"), Contains("'pt'"));
}

TEST_CASE("weight store: validation reports every problem together", "[checkpoint]") {
  const kl::ModelConfig c = small_config();
  std::vector<kl::TensorSpec> specs = kl::expected_tensors(c);
  std::vector<kl::test::RawTensor> raw;
  uint64_t off = 0;
  auto add = [&](const std::string& name, const std::string& dtype, std::vector<int64_t> shape,
                 uint64_t esize) {
    uint64_t n = esize;
    for (int64_t d : shape) n *= d;
    raw.push_back({name, dtype, shape, off, off + n});
    off += n;
  };
  for (const kl::TensorSpec& s : specs) {
    const std::string& n = s.name;
    if (n == "model.layers.1.block_sparse_moe.experts.2.w3.weight") continue;  // missing
    if (n == "model.layers.2.self_attn.kv_b_proj.weight") {
      add(n, "BF16", {16, 32}, 2);  // transposed: misshaped
    } else if (n == "model.layers.3.self_attn.o_proj.weight") {
      add(n, "I8", s.shape, 1);  // unsupported dtype
    } else if (n == "model.layers.0.self_attn.q_conv1d.weight") {
      add(n, "BF16", {16, 4}, 2);  // 2-D conv: accepted
    } else if (n == "model.layers.0.self_attn.A_log") {
      add(n, "BF16", s.shape, 2);  // BF16 where F32 is stored: accepted (converted on read)
    } else if (n == "model.layers.0.mlp.up_proj.weight") {
      add(n, "F16", s.shape, 2);
    } else {
      add(n, std::string(kl::dtype_name(s.dtype)), s.shape, kl::dtype_size(s.dtype));
    }
  }
  add("model.layers.0.self_attn.rotary_emb.inv_freq", "F32", {4}, 4);  // unexpected
  TempDir dir;
  kl::test::write_raw_safetensors(dir.path() + "/model.safetensors", raw, off, /*sparse=*/true);

  const kl::WeightStore ws = kl::WeightStore::open(dir.path());
  const std::string e = validation_error(ws, c);
  INFO(e);
  CHECK_THAT(e, Contains(dir.path()) && Contains("small.json"));
  CHECK_THAT(e, Contains("1 missing, 1 unexpected, 2 misshaped or of unsupported dtype"));
  CHECK_THAT(e, Contains("model.layers.1.block_sparse_moe.experts.2.w3.weight [16, 32] BF16"));
  CHECK_THAT(e, Contains("model.layers.0.self_attn.rotary_emb.inv_freq [4] F32"));
  CHECK_THAT(e, Contains("model.layers.2.self_attn.kv_b_proj.weight: stored [16, 32] BF16"));
  CHECK_THAT(e, Contains("expected [32, 16] BF16"));
  CHECK_THAT(e, Contains("model.layers.3.self_attn.o_proj.weight: stored [32, 16] I8"));
  CHECK_THAT(e, Contains("(unsupported dtype)"));
  CHECK(e.find("q_conv1d") == std::string::npos);
  CHECK(e.find("A_log") == std::string::npos);
  CHECK(e.find("up_proj") == std::string::npos);
  CHECK_THROWS_WITH(ws.get("model.layers.3.self_attn.o_proj.weight"), Contains("I8"));
  CHECK_THROWS_WITH(ws.get("no.such.tensor"), Contains("'no.such.tensor'"));
  // Accepted substitutes read back through the 2-D rule.
  CHECK(ws.get("model.layers.0.self_attn.q_conv1d.weight").cols == 4);
  CHECK(ws.get("model.layers.0.self_attn.A_log").dtype == kl::DType::kBF16);
}

TEST_CASE("weight store: long problem lists are cut with counts", "[checkpoint]") {
  const kl::ModelConfig c = small_config();
  TempDir dir;
  kl::test::write_raw_safetensors(dir.path() + "/model.safetensors",
                                  {{"model.embed_tokens.weight", "BF16", {96, 32}, 0, 96 * 32 * 2}},
                                  96 * 32 * 2, true);
  const std::string e = validation_error(kl::WeightStore::open(dir.path()), c);
  const size_t n = kl::expected_tensors(c).size() - 1;
  CHECK_THAT(e, Contains(fmt::format("{} missing, 0 unexpected, 0 misshaped", n)));
  CHECK_THAT(e, Contains(fmt::format("... and {} more", n - 20)));
}

TEST_CASE("weight store: index and directory problems", "[checkpoint]") {
  const kl::ModelConfig c = small_config();
  TempDir dir;
  CHECK_THROWS_WITH(kl::WeightStore::open(dir.path()),
                    Contains(dir.path()) && Contains("model.safetensors"));
  CHECK_THROWS_WITH(kl::WeightStore::open(dir.path() + "/nope"), Contains("does not exist"));

  kl::write_sparse_checkpoint(kl::expected_tensors(c), dir.path(), 2);
  const std::string ipath = dir.path() + "/model.safetensors.index.json";
  nlohmann::json index = kl::test::read_json_file(ipath);
  REQUIRE_NOTHROW(kl::WeightStore::open(dir.path(), c));

  SECTION("a weight_map entry absent from its shard, and a tensor missing from weight_map") {
    index["weight_map"]["model.layers.9.ghost"] = "model-00001-of-00002.safetensors";
    index["weight_map"].erase("model.norm.weight");
    kl::test::write_text_file(ipath, index.dump());
    CHECK_THROWS_WITH(kl::WeightStore::open(dir.path()),
                      Contains(ipath) && Contains("2 problem(s)") &&
                          Contains("'model.layers.9.ghost' is in weight_map") &&
                          Contains("'model.norm.weight' is in model-00002-of-00002.safetensors but "
                                   "not in weight_map"));
  }
  SECTION("weight_map names the wrong shard") {
    index["weight_map"]["model.norm.weight"] = "model-00001-of-00002.safetensors";
    kl::test::write_text_file(ipath, index.dump());
    CHECK_THROWS_WITH(kl::WeightStore::open(dir.path()), Contains("weight_map says"));
  }
  SECTION("a shard file is missing") {
    fs::remove(dir.path() + "/model-00002-of-00002.safetensors");
    CHECK_THROWS_WITH(kl::WeightStore::open(dir.path()),
                      Contains("do not exist") && Contains("model-00002-of-00002.safetensors"));
  }
  SECTION("a shard name that leaves the directory") {
    index["weight_map"]["model.norm.weight"] = "../x.safetensors";
    kl::test::write_text_file(ipath, index.dump());
    CHECK_THROWS_WITH(kl::WeightStore::open(dir.path()),
                      Contains("'weight_map.model.norm.weight'"));
  }
  SECTION("no weight_map") {
    kl::test::write_text_file(ipath, "{\"metadata\": {}}");
    CHECK_THROWS_WITH(kl::WeightStore::open(dir.path()),
                      Contains(ipath) && Contains("'weight_map'"));
  }
}

TEST_CASE("checkpoint writer: shard splitting and argument checks", "[checkpoint]") {
  const auto specs = kl::expected_tensors(small_config());
  TempDir dir;
  const kl::CheckpointSummary s = kl::write_sparse_checkpoint(specs, dir.path(), 7);
  CHECK(s.shard_files.size() == 7);
  for (const std::string& f : s.shard_files) CHECK(!kl::SafetensorsFile::open(f).tensors().empty());
  CHECK_THROWS_WITH(kl::write_sparse_checkpoint(specs, dir.path(), 0), Contains("at least 1"));
  CHECK_THROWS_WITH(kl::write_sparse_checkpoint({specs[0]}, dir.path(), 2), Contains("non-empty"));
}

TEST_CASE("weight store: the tiny-a golden checkpoint validates and binds", "[checkpoint]") {
  auto golden = kl::test::golden_dir();
  if (!golden) {
    WARN(
        "golden data not found (KL_GOLDEN_DIR or ../shared/golden): tiny-a checkpoint not checked");
    return;
  }
  const std::string model = *golden + "/tiny-a/model";
  const kl::ModelConfig c = kl::load_model_config(model + "/config.json");
  const kl::WeightStore ws = kl::WeightStore::open(model, c);
  CHECK(ws.num_tensors() == kl::expected_tensors(c).size());
  CHECK(ws.total_bytes() == 11761264);  // the index's metadata.total_size
  const kl::ModelWeights mw = kl::bind_model_weights(c, ws);
  CHECK(mw.layers[0].kda.a_log.dtype == kl::DType::kF32);
  CHECK(mw.layers[0].kda.a_log.cols == 2);
  CHECK(mw.layers[3].mla.kv_b_proj.rows == 2 * 256);
  CHECK(mw.layers[1].moe.w1.size() == 8);
  // Norm weights were drawn in [0.5, 1.5] by the generator (golden README).
  for (int64_t i = 0; i < mw.final_norm.numel(); ++i)
    CHECK((mw.final_norm.at(i) >= 0.5f && mw.final_norm.at(i) <= 1.5f));
}

TEST_CASE("weight store: the project's own golden checkpoints validate and bind", "[checkpoint]") {
  const fs::path root = fs::path(KL_SOURCE_DIR) / "tests" / "data" / "golden";
  int checked = 0;
  if (fs::is_directory(root)) {
    for (const auto& e : fs::directory_iterator(root)) {
      if (!fs::exists(e.path() / "model" / "config.json")) continue;
      INFO(e.path().string());
      const std::string model = (e.path() / "model").string();
      const kl::ModelConfig c = kl::load_model_config(model + "/config.json");
      const kl::WeightStore ws = kl::WeightStore::open(model, c);
      CHECK(kl::bind_model_weights(c, ws).layers.size() == size_t(c.num_hidden_layers));
      ++checked;
    }
  }
  if (checked == 0) WARN("no golden checkpoints under " << root.string());
}
