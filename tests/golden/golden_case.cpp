// Loading golden reference cases (see golden_case.h).
#include "tests/golden/golden_case.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "engine/core/error.h"
#include "tests/support/test_support.h"

namespace kl::test {

namespace {

namespace fs = std::filesystem;

std::vector<float> read_f32(const SafetensorsFile& f, const std::string& name) {
  const SafetensorsTensor* t = f.find(name);
  if (!t) fail("{}: no tensor {}", f.path(), name);
  KL_CHECK(t->dtype == DType::kF32, "{}: {} is {}, expected F32", f.path(), name, t->dtype_name);
  std::vector<float> v(t->nbytes / sizeof(float));
  std::memcpy(v.data(), f.data(*t), t->nbytes);
  return v;
}

}  // namespace

GoldenCase load_golden_case(const std::string& dir) {
  GoldenCase gc;
  gc.dir = dir;
  const fs::path root(dir);
  std::ifstream in(root / "golden.json");
  KL_CHECK(in.good(), "cannot open {}", (root / "golden.json").string());
  const nlohmann::json meta = nlohmann::json::parse(in);
  gc.name = meta.at("case").get<std::string>();
  gc.activations_prompt = meta.value("activations_prompt", "");

  gc.config = load_model_config((root / "model" / "config.json").string());
  gc.store = std::make_unique<WeightStore>(WeightStore::open((root / "model").string(), gc.config));
  gc.weights = bind_model_weights(gc.config, *gc.store);

  const SafetensorsFile logits = SafetensorsFile::open((root / "logits.safetensors").string());
  for (const auto& p : meta.at("prompts")) {
    GoldenPrompt gp;
    gp.name = p.at("name").get<std::string>();
    gp.input_ids = p.at("input_ids").get<std::vector<int32_t>>();
    gp.greedy_ids = p.at("greedy_ids").get<std::vector<int32_t>>();
    gp.greedy_margin = p.at("greedy_top2_margin").get<std::vector<float>>();
    if (logits.find(gp.name + ".prefill_logits"))
      gp.prefill_logits = read_f32(logits, gp.name + ".prefill_logits");
    gp.decode_logits = read_f32(logits, gp.name + ".decode_logits");
    gc.prompts.push_back(std::move(gp));
  }
  if (fs::exists(root / "activations.safetensors")) {
    const SafetensorsFile acts = SafetensorsFile::open((root / "activations.safetensors").string());
    for (const auto& t : acts.tensors()) gc.activations[t.name] = read_f32(acts, t.name);
  }
  return gc;
}

std::vector<std::string> golden_case_dirs() {
  // Case directories (those holding a golden.json) of `root`, sorted.
  auto cases_in = [](const fs::path& root) {
    std::vector<fs::path> found;
    if (!fs::is_directory(root)) return found;
    for (const auto& e : fs::directory_iterator(root))
      if (e.is_directory() && fs::exists(e.path() / "golden.json")) found.push_back(e.path());
    std::sort(found.begin(), found.end());
    return found;
  };
  std::vector<std::string> dirs, names;
  auto add = [&](const fs::path& d) {
    const std::string name = d.filename().string();
    if (std::find(names.begin(), names.end(), name) != names.end()) return;
    names.push_back(name);
    dirs.push_back(d.string());
  };
  // The golden dir (tiny-a; a GPU machine's staged copy also holds the project's own cases).
  if (auto g = golden_dir()) {
    KL_CHECK(fs::is_directory(fs::path(*g) / "tiny-a"), "golden dir {} has no tiny-a case", *g);
    for (const fs::path& d : cases_in(*g)) add(d);
  }
  for (const fs::path& d : cases_in(fs::path(KL_SOURCE_DIR) / "tests" / "data" / "golden")) add(d);
  // KL_GOLDEN_ONLY=name[,name...] keeps only the named cases (e.g. a large case generated on the
  // GPU machine by scripts/gpu-golden-real.sh); a name that is not found is an error, not a skip.
  if (const char* only = std::getenv("KL_GOLDEN_ONLY"); only && *only) {
    std::vector<std::string> kept;
    std::string list = only;
    for (size_t start = 0; start <= list.size();) {
      const size_t end = std::min(list.find(',', start), list.size());
      const std::string want = list.substr(start, end - start);
      start = end + 1;
      if (want.empty()) continue;
      const auto it = std::find(names.begin(), names.end(), want);
      KL_CHECK(it != names.end(), "KL_GOLDEN_ONLY: no golden case named {}", want);
      kept.push_back(dirs[static_cast<size_t>(it - names.begin())]);
    }
    dirs = std::move(kept);
  }
  return dirs;
}

}  // namespace kl::test
