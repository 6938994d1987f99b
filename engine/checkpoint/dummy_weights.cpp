// The `dummy` load format: a counter-based generator (splitmix64 + Box-Muller, no std::
// distributions, whose algorithms differ between standard libraries) and WeightStore::dummy.
#include "engine/checkpoint/dummy_weights.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <string_view>
#include <thread>

#include "engine/checkpoint/weight_store.h"
#include "engine/core/counter_random.h"
#include "engine/core/error.h"

namespace kl {
namespace {

using random::kTwoPi;
using random::splitmix64;
using random::uniform;
// Elements per work item: large enough to amortise scheduling, small enough to balance threads.
constexpr int64_t kChunk = int64_t{1} << 20;

uint64_t fnv1a64(std::string_view s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (char c : s) {
    h ^= static_cast<uint8_t>(c);
    h *= 0x100000001b3ull;
  }
  return h;
}

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

// f32 -> IEEE half, round to nearest even (dtype.h has only the widening direction).
uint16_t f32_to_f16(float value) {
  uint32_t f;
  std::memcpy(&f, &value, 4);
  const uint32_t sign = (f >> 16) & 0x8000u;
  f &= 0x7fffffffu;
  if (f >= 0x47800000u) return static_cast<uint16_t>(sign | (f > 0x7f800000u ? 0x7e00u : 0x7c00u));
  if (f < 0x38800000u) {  // below the smallest normal half: let an f32 add do the rounding
    const uint32_t magic_bits = 126u << 23;  // 0.5f: aligns the half's subnormal ulp to bit 0
    float magic, sum;
    std::memcpy(&magic, &magic_bits, 4);
    float in;
    std::memcpy(&in, &f, 4);
    sum = in + magic;
    uint32_t s;
    std::memcpy(&s, &sum, 4);
    return static_cast<uint16_t>(sign | (s - magic_bits));
  }
  const uint32_t odd = (f >> 13) & 1u;
  f += (uint32_t(15 - 127) << 23) + 0xfffu + odd;
  return static_cast<uint16_t>(sign | (f >> 13));
}

void store(DType t, void* base, int64_t i, float v) {
  switch (t) {
    case DType::kF32:
      static_cast<float*>(base)[i] = v;
      break;
    case DType::kBF16:
      static_cast<uint16_t*>(base)[i] = f32_to_bf16(v);
      break;
    case DType::kF16:
      static_cast<uint16_t*>(base)[i] = f32_to_f16(v);
      break;
  }
}

bool is_normal(DummyInit init) {
  return init != DummyInit::kNormWeight && init != DummyInit::kALog;
}

}  // namespace

DummyRecipe dummy_recipe(const TensorSpec& spec, uint64_t seed) {
  DummyRecipe r;
  r.key = splitmix64(seed ^ splitmix64(fnv1a64(spec.name)));
  const std::string_view n = spec.name;
  if (ends_with(n, "A_log")) {
    r.init = DummyInit::kALog;
  } else if (ends_with(n, "dt_bias")) {
    r.init = DummyInit::kDtBias;
  } else if (ends_with(n, "e_score_correction_bias")) {
    r.init = DummyInit::kRouterBias;
    r.stddev = 0.05f;
  } else if (n == kEmbedTokensName) {
    r.init = DummyInit::kEmbedding;
  } else if (ends_with(n, "norm.weight")) {  // every RMSNorm: layernorms, o_norm, model.norm
    r.init = DummyInit::kNormWeight;
  } else {
    r.init = DummyInit::kLinear;
    int64_t fan_in = 1;
    for (size_t d = 1; d < spec.shape.size(); ++d) fan_in *= spec.shape[d];
    r.stddev =
        static_cast<float>(1.0 / std::sqrt(static_cast<double>(std::max<int64_t>(fan_in, 1))));
  }
  return r;
}

float dummy_value(const DummyRecipe& r, int64_t i) {
  switch (r.init) {
    case DummyInit::kNormWeight:
      return static_cast<float>(0.5 + uniform(r.key, i));
    case DummyInit::kALog:
      return static_cast<float>(std::log(1.0 + 15.0 * uniform(r.key, i)));
    default:
      break;
  }
  return static_cast<float>(random::normal(r.key, i) * r.stddev);
}

void fill_dummy_range(const TensorSpec& spec, const DummyRecipe& r, int64_t begin, int64_t end,
                      void* base) {
  if (!is_normal(r.init)) {
    for (int64_t i = begin; i < end; ++i) store(spec.dtype, base, i, dummy_value(r, i));
    return;
  }
  // Normals come in Box-Muller pairs: draw both halves of a pair at once.
  int64_t i = begin;
  if (i < end && (i & 1)) {
    store(spec.dtype, base, i, dummy_value(r, i));
    ++i;
  }
  for (; i + 1 < end; i += 2) {
    const uint64_t pair = static_cast<uint64_t>(i) >> 1;
    const double rad = std::sqrt(-2.0 * std::log(uniform(r.key, 2 * pair)));
    const double ang = kTwoPi * uniform(r.key, 2 * pair + 1);
    store(spec.dtype, base, i, static_cast<float>(rad * std::cos(ang) * r.stddev));
    store(spec.dtype, base, i + 1, static_cast<float>(rad * std::sin(ang) * r.stddev));
  }
  if (i < end) store(spec.dtype, base, i, dummy_value(r, i));
}

void fill_dummy_tensors(const std::vector<TensorSpec>& specs, uint64_t seed,
                        const std::vector<void*>& outs) {
  KL_CHECK(specs.size() == outs.size(), "fill_dummy_tensors: {} specs but {} buffers", specs.size(),
           outs.size());
  struct Item {
    size_t tensor;
    int64_t begin, end;
  };
  std::vector<DummyRecipe> recipes;
  std::vector<Item> items;
  recipes.reserve(specs.size());
  for (size_t t = 0; t < specs.size(); ++t) {
    recipes.push_back(dummy_recipe(specs[t], seed));
    const int64_t n = specs[t].numel();
    for (int64_t b = 0; b < n; b += kChunk) items.push_back({t, b, std::min(n, b + kChunk)});
  }
  std::atomic<size_t> next{0};
  auto work = [&] {
    for (size_t k; (k = next.fetch_add(1)) < items.size();) {
      const Item& it = items[k];
      fill_dummy_range(specs[it.tensor], recipes[it.tensor], it.begin, it.end, outs[it.tensor]);
    }
  };
  const size_t num_threads =
      std::min<size_t>(std::max(1u, std::thread::hardware_concurrency()), items.size());
  std::vector<std::thread> threads;
  for (size_t t = 1; t < num_threads; ++t) threads.emplace_back(work);
  work();
  for (std::thread& t : threads) t.join();
}

WeightStore WeightStore::dummy(const ModelConfig& config, uint64_t seed) {
  constexpr uint64_t kAlign = 64;  // cache-line aligned tensors, as a GEMM would like them
  const std::vector<TensorSpec> specs = expected_tensors(config);
  std::vector<uint64_t> offsets;
  uint64_t total = 0;
  for (const TensorSpec& s : specs) {
    offsets.push_back(total);
    total += (s.nbytes() + kAlign - 1) / kAlign * kAlign;
  }
  WeightStore ws;
  ws.source_ = fmt::format("dummy(seed={})", seed);
  // new[] of std::byte is max_align_t-aligned (16); offset the base to reach 64.
  ws.owned_ = std::make_unique_for_overwrite<std::byte[]>(total + kAlign);
  std::byte* base = ws.owned_.get();
  base += (kAlign - reinterpret_cast<uintptr_t>(base) % kAlign) % kAlign;
  std::vector<void*> outs;
  for (size_t t = 0; t < specs.size(); ++t) {
    outs.push_back(base + offsets[t]);
    const TensorSpec& s = specs[t];
    ws.add_tensor(TensorInfo{s.name, s.shape, std::string(dtype_name(s.dtype)), s.dtype, s.nbytes(),
                             "<dummy>"},
                  base + offsets[t]);
  }
  fill_dummy_tensors(specs, seed, outs);
  ws.finalize();
  return ws;
}

WeightStore WeightStore::dummy_layout(const ModelConfig& config, uint64_t seed) {
  const std::vector<TensorSpec> specs = expected_tensors(config);
  WeightStore ws;
  ws.source_ = fmt::format("dummy(seed={}, generated on the device)", seed);
  ws.layout_only_ = true;
  ws.dummy_seed_ = seed;
  // Placeholder addresses: distinct (a tied lm_head shares the embedding's, as with real data)
  // and never dereferenced. They start far from null so that a stray read faults loudly.
  uintptr_t next = uintptr_t{1} << 44;
  for (const TensorSpec& s : specs) {
    const auto* data = reinterpret_cast<const std::byte*>(next);
    next += (s.nbytes() + 63) / 64 * 64;
    ws.add_tensor(TensorInfo{s.name, s.shape, std::string(dtype_name(s.dtype)), s.dtype, s.nbytes(),
                             "<dummy>"},
                  data);
    ws.layout_specs_[data] = s;
  }
  ws.finalize();
  return ws;
}

std::optional<std::pair<TensorSpec, DummyRecipe>> WeightStore::dummy_recipe_at(
    const void* data) const {
  auto it = layout_specs_.find(data);
  if (!layout_only_ || it == layout_specs_.end()) return std::nullopt;
  return std::pair{it->second, dummy_recipe(it->second, dummy_seed_)};
}

}  // namespace kl
