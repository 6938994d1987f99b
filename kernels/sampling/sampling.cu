// GpuSampler: the GPU twin of sample_row_ref (sampling_ref.cpp documents the order of operations).
// Per step: (1) one block per row applies the logits processors into scratch and, for greedy rows,
// takes the arg-max right there; (2) a segmented radix sort (a device-wide one for a single-row
// step) orders each sampled row's processed keys descending with ids ascending on ties (a stable
// sort of ids 0..V-1), which gives the twin's canonical order (w descending, then id) up to the
// order inside runs of equal w (see KeyMode);
// (3) one block per sampled row applies min-p, top-k, top-p and the draw with double-precision
// prefix sums over that order, and reads the drawn position's id in the canonical order
// (canonical_id_at); (4) the raw-distribution log-probabilities (sampling_logprobs.cu). Nothing
// waits on the host.
#include <cuda_runtime.h>

#include <cub/device/device_radix_sort.cuh>
#include <cub/device/device_segmented_radix_sort.cuh>

#include <algorithm>

#include "engine/core/error.h"
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/sampling/sampling_cuda.h"
#include "kernels/sampling/sampling_device.cuh"
#include "kernels/sampling/sampling_internal.h"

namespace kl::kernels {
namespace {

using namespace sampling_detail;

// How a sampled row's 32-bit sort keys encode its weights w = exp((l - max) / T). The twin orders
// by w, then id: ordering by the logit is the same except inside runs of distinct logits with the
// same double w. Such runs cover the whole row once T is huge (T > ~1e9 |l|), so a row whose
// candidate w all lie within 2^32 - 1 doubles of 1.0 is keyed by the w's bit offset (exact,
// equal w -> equal key, so the stable sort puts each run in id order); any other row is keyed by
// the logit. Runs remain possible there (logits closer than the double resolution of l - max, e.g.
// |l| < 1e-17 next to max = 1, or a large T), and the draw kernel reads the drawn position's id
// in id order within its run (canonical_id_at), which is all that the twin's result depends on.
enum KeyMode : int {
  kKeyLogit = 0,      // key = order_key(l)
  kKeyWeight = 1,     // key = bits(w) - base + 1, 0 for -inf; base = bits of the smallest w
  kKeyAllRemoved = 2  // no token above -inf after the processors: the raw arg-max
};

// Scratch: sort keys and ids 0..V-1 (its values) in buffer 0 ([rows, V]); buffer 1 is the sort's
// alternate, and before the sort buffer 1's ids double as the frequency counts of the row's
// output tokens (indexed by token). Per row: the key mode and base.
struct RowScratch {
  uint32_t* keys;
  int32_t* ids;
  int32_t* counts;
  int* mode;
  unsigned long long* base;
};

// Marks token t in the shared bitmap; true for the first caller only, so a token repeated in the
// history is penalised once, whichever thread sees it first (the result does not depend on which).
__device__ __forceinline__ bool first_visit(uint32_t* bitmap, int32_t t) {
  const uint32_t bit = 1u << (t & 31);
  return (atomicOr(&bitmap[t >> 5], bit) & bit) == 0;
}

// Steps 2-5 of the twin on a row already copied into `l` (NaN as -inf, -0 as +0), touching only the
// tokens named in the histories. Float ops are written with _rn intrinsics so that nvcc cannot fuse
// them into FMAs: each must round exactly like the twin's separate operations.
__device__ void apply_sparse_processors(const SamplingCudaParams& p, const GpuSamplingRow& r,
                                        float* l, int32_t* counts, uint32_t* bitmap,
                                        int64_t bitmap_words) {
  const int64_t V = p.vocab;
  // logit_bias: duplicate ids accumulate in list order, so the first occurrence of an id adds all
  // of its entries itself, sequentially.
  for (int i = threadIdx.x; i < r.bias_count; i += kThreads) {
    const int32_t t = p.bias_tokens[r.bias_begin + i];
    if (!in_vocab(t, V)) continue;
    bool first = true;
    for (int j = 0; j < i && first; ++j) first = p.bias_tokens[r.bias_begin + j] != t;
    if (!first) continue;
    float v = l[t];
    for (int j = i; j < r.bias_count; ++j)
      if (p.bias_tokens[r.bias_begin + j] == t) v = __fadd_rn(v, p.bias_values[r.bias_begin + j]);
    l[t] = v;
  }
  __syncthreads();
  for (int i = threadIdx.x; i < r.banned_count; i += kThreads) {
    const int32_t t = p.tokens[r.banned_begin + i];
    if (in_vocab(t, V)) l[t] = -kInfF;
  }
  __syncthreads();

  const int num_hist = r.prompt_count + r.output_count;
  if (r.repetition_penalty != 1.f && num_hist > 0) {
    for (int64_t w = threadIdx.x; w < bitmap_words; w += kThreads) bitmap[w] = 0;
    __syncthreads();
    const float rp = r.repetition_penalty;
    for (int i = threadIdx.x; i < num_hist; i += kThreads) {
      const int32_t t = i < r.prompt_count ? p.tokens[r.prompt_begin + i]
                                           : p.tokens[r.output_begin + (i - r.prompt_count)];
      if (!in_vocab(t, V) || !first_visit(bitmap, t)) continue;
      const float v = l[t];
      l[t] = v > 0 ? __fdiv_rn(v, rp) : __fmul_rn(v, rp);
    }
    __syncthreads();
  }

  if ((r.frequency_penalty != 0.f || r.presence_penalty != 0.f) && r.output_count > 0) {
    const int32_t* out = p.tokens + r.output_begin;
    for (int i = threadIdx.x; i < r.output_count; i += kThreads)
      if (in_vocab(out[i], V)) counts[out[i]] = 0;
    for (int64_t w = threadIdx.x; w < bitmap_words; w += kThreads) bitmap[w] = 0;
    __syncthreads();
    for (int i = threadIdx.x; i < r.output_count; i += kThreads)
      if (in_vocab(out[i], V)) atomicAdd(&counts[out[i]], 1);
    __syncthreads();
    for (int i = threadIdx.x; i < r.output_count; i += kThreads) {
      const int32_t t = out[i];
      if (!in_vocab(t, V) || !first_visit(bitmap, t)) continue;
      float v = __fsub_rn(l[t], __fmul_rn(r.frequency_penalty, static_cast<float>(counts[t])));
      l[t] = __fsub_rn(v, r.presence_penalty);
    }
    __syncthreads();
  }

  // NaN from the steps above (inf - inf, -inf * 0) becomes -inf; a zero result is made +0 so that
  // the radix sort cannot separate -0 from +0 (the twin's w treats them alike). Only touched
  // tokens can have changed; a token listed twice is rewritten with the same value.
  auto fix = [&](int32_t t) {
    if (!in_vocab(t, V)) return;
    const float v = l[t];
    if (isnan(v) || v == 0.f) l[t] = isnan(v) ? -kInfF : 0.f;
  };
  for (int i = threadIdx.x; i < r.bias_count; i += kThreads) fix(p.bias_tokens[r.bias_begin + i]);
  for (int i = threadIdx.x; i < num_hist; i += kThreads)
    fix(i < r.prompt_count ? p.tokens[r.prompt_begin + i]
                           : p.tokens[r.output_begin + (i - r.prompt_count)]);
  __syncthreads();
}

// The twin's w of a processed logit x given the row's max (double, as kept_candidates).
__device__ __forceinline__ double weight_of(float x, float max_l, double t) {
  if (max_l == kInfF) return x == kInfF ? 1.0 : 0.0;
  if (x == -kInfF) return 0.0;
  return exp((static_cast<double>(x) - static_cast<double>(max_l)) / t);
}

// Kernel 1, one block per row: processed logits into scratch; greedy rows get their token here
// and an empty sort segment, sampled rows the segment [row * V, (row + 1) * V).
__global__ void __launch_bounds__(kThreads)
    process_kernel(SamplingCudaParams p, RowScratch s, int* seg_begin, int* seg_end) {
  __shared__ BlockShared sh;
  extern __shared__ uint32_t bitmap[];  // [ceil(V / 32)]: tokens already penalised
  const int64_t row = blockIdx.x;
  const int64_t V = p.vocab;
  const GpuSamplingRow r = p.rows[row];
  const float* raw = p.logits + row * p.logits_stride;
  const bool greedy = is_greedy(r);
  const int num_hist = r.prompt_count + r.output_count;
  const bool touched =
      r.bias_count > 0 || r.banned_count > 0 || (r.repetition_penalty != 1.f && num_hist > 0) ||
      ((r.frequency_penalty != 0.f || r.presence_penalty != 0.f) && r.output_count > 0);
  if (threadIdx.x == 0) {
    seg_begin[row] = static_cast<int>(row * V);
    seg_end[row] = static_cast<int>(greedy ? row * V : (row + 1) * V);
  }
  if (greedy && !touched) {
    // The common case: one pass over the raw row (an all -inf/NaN row gives token 0, as the
    // twin's fallback to the raw arg-max does).
    const ArgMax best = block_argmax(
        V, [&](int64_t i) { return raw[i]; }, sh);
    if (threadIdx.x == 0) p.out_tokens[row] = best.id;
    return;
  }

  float* l = reinterpret_cast<float*>(s.keys + row * V);  // keys hold the floats until keyed
  int32_t* ids = s.ids + row * V;
  for (int64_t i = threadIdx.x; i < V; i += kThreads) {
    const float v = nan_to_neg_inf(raw[i]);
    l[i] = v == 0.f ? 0.f : v;
    if (!greedy) ids[i] = static_cast<int32_t>(i);
  }
  __syncthreads();  // the block's global writes are visible to the block after the barrier
  if (touched) apply_sparse_processors(p, r, l, s.counts + row * V, bitmap, (V + 31) / 32);

  if (greedy) {
    ArgMax best = block_argmax(
        V, [&](int64_t i) { return l[i]; }, sh);
    if (best.v == -kInfF)
      best = block_argmax(
          V, [&](int64_t i) { return raw[i]; }, sh);
    if (threadIdx.x == 0) p.out_tokens[row] = best.id;
    return;
  }

  // Sampled row: choose the key mode from the max and the smallest finite logit, then key in place
  // (each thread rewrites only the elements it reads).
  float local_max = -kInfF, local_min = kInfF;
  for (int64_t i = threadIdx.x; i < V; i += kThreads) {
    const float v = l[i];
    local_max = fmaxf(local_max, v);
    if (v != -kInfF) local_min = fminf(local_min, v);
  }
  const float max_l = block_max_float(local_max, sh);
  const float min_l = -block_max_float(-local_min, sh);
  const double t = r.temperature;
  int mode = kKeyLogit;
  unsigned long long base = 0;
  if (max_l == -kInfF) {
    mode = kKeyAllRemoved;
  } else if (max_l != kInfF) {
    const double w_min = weight_of(min_l, max_l, t);
    base = static_cast<unsigned long long>(__double_as_longlong(w_min));
    const auto one = static_cast<unsigned long long>(__double_as_longlong(1.0));
    if (w_min > 0 && one - base < 0xffffffffull) mode = kKeyWeight;
  }
  if (threadIdx.x == 0) {
    s.mode[row] = mode;
    s.base[row] = base;
  }
  uint32_t* keys = s.keys + row * V;
  for (int64_t i = threadIdx.x; i < V; i += kThreads) {
    const float v = l[i];
    if (mode != kKeyWeight) {
      keys[i] = order_key(v);
    } else if (v == -kInfF) {
      keys[i] = 0;
    } else {
      const auto bits =
          static_cast<unsigned long long>(__double_as_longlong(weight_of(v, max_l, t)));
      keys[i] = bits <= base ? 1u : static_cast<uint32_t>(bits - base + 1);
    }
  }
}

// The w of sorted position j of a sampled row, decoded from its key.
struct SortedWeights {
  const uint32_t* keys;
  int mode;
  unsigned long long base;
  float max_l;
  double t;
  __device__ __forceinline__ double operator()(int j) const {
    const uint32_t k = keys[j];
    if (mode == kKeyWeight)
      return k == 0 ? 0.0 : __longlong_as_double(static_cast<long long>(base + k - 1));
    return weight_of(from_order_key(k), max_l, t);
  }
};

// The first j in [0, n) whose inclusive prefix sum of w over the sorted row is > target (strict)
// or >= target; n if none. Tiles of kThreads x kItems in order, a block scan inside a tile and a
// running carry across tiles; stops at the first tile that crosses.
template <bool kStrict>
__device__ int first_crossing(const SortedWeights& weight, int n, double target, BlockShared& sh) {
  constexpr int kItems = 4;
  constexpr int kTile = kThreads * kItems;
  __shared__ int found;
  if (threadIdx.x == 0) found = n;
  __syncthreads();
  double carry = 0;
  for (int base = 0; base < n; base += kTile) {
    double w[kItems];
    double sum = 0;
    const int first = base + threadIdx.x * kItems;
    for (int k = 0; k < kItems; ++k) {
      w[k] = first + k < n ? weight(first + k) : 0.0;
      sum += w[k];
    }
    double prefix, tile_total;
    cub::BlockScan<double, kThreads>(sh.temp.dscan).ExclusiveSum(sum, prefix, tile_total);
    double run = carry + prefix;
    for (int k = 0; k < kItems && first + k < n; ++k) {
      run += w[k];
      if (kStrict ? target < run : run >= target) {
        atomicMin(&found, first + k);
        break;
      }
    }
    carry += tile_total;
    __syncthreads();
    if (found < n) break;
  }
  const int out = found;
  __syncthreads();
  return out;
}

// The (rank)-th smallest of the n ids in ids[0, n) (ids < 2^bits): a radix select, most
// significant bit first, with one block count per bit. Every thread gets the result.
__device__ int32_t nth_smallest_id(const int32_t* ids, int n, int rank, int bits, BlockShared& sh) {
  uint32_t prefix = 0;  // the bits above `bit` fixed so far
  for (int bit = bits - 1; bit >= 0; --bit) {
    int local = 0;  // ids matching the prefix with a 0 at `bit`
    for (int i = threadIdx.x; i < n; i += kThreads) {
      const auto id = static_cast<uint32_t>(ids[i]);
      local += (id >> bit) == (prefix >> bit);  // prefix has 0 at `bit` and below
    }
    const int zeros = block_sum_int(local, sh);
    if (rank >= zeros) {
      rank -= zeros;
      prefix |= 1u << bit;
    }
  }
  return static_cast<int32_t>(prefix);
}

// The twin's token at canonical position j, given the sorted row. The filters and the draw only
// see the sequence of w along the order, and that sequence is the same for the twin (w descending,
// then id) and for the sort (key descending, then id): w is non-increasing in the key. The ids
// differ only inside a run of equal w whose keys differ, i.e. distinct logits with the same double
// w (x - max rounds alike when |x| is below the double resolution of max, or T is huge); the twin
// orders such a run by id, so position j holds the (j - a)-th smallest id of the run [a, b). In the
// weight key mode equal w means equal key, so the run is already in id order.
__device__ int32_t canonical_id_at(const SortedWeights& weight, const uint32_t* keys,
                                   const int32_t* ids, int V, int j, BlockShared& sh) {
  const double wj = weight(j);
  // The common case, a run of one: two neighbours (every thread computes the same values).
  if ((j == 0 || weight(j - 1) != wj) && (j + 1 == V || weight(j + 1) != wj)) return ids[j];
  int lo = 0, hi = j;  // a: the first position whose w is not above wj
  while (lo < hi) {
    const int mid = (lo + hi) / 2;
    if (weight(mid) > wj)
      lo = mid + 1;
    else
      hi = mid;
  }
  const int a = lo;
  lo = j + 1, hi = V;  // b: the first position whose w is below wj (non-candidates have w = 0)
  while (lo < hi) {
    const int mid = (lo + hi) / 2;
    if (weight(mid) < wj)
      hi = mid;
    else
      lo = mid + 1;
  }
  const int b = lo;
  if (keys[a] == keys[b - 1]) return ids[j];  // one key: the stable sort left the ids ascending
  const int bits = V > 1 ? 32 - __clz(V - 1) : 0;
  return nth_smallest_id(ids + a, b - a, j - a, bits, sh);
}

// Kernel 3, one block per sampled row, on the sorted row (keys descending, ids ascending on ties).
__global__ void __launch_bounds__(kThreads)
    draw_kernel(SamplingCudaParams p, RowScratch s, const uint32_t* sorted_keys,
                const int32_t* sorted_ids) {
  __shared__ BlockShared sh;
  const int64_t row = blockIdx.x;
  const GpuSamplingRow r = p.rows[row];
  if (is_greedy(r)) return;
  const int V = static_cast<int>(p.vocab);
  const int32_t* ids = sorted_ids + row * V;
  const int mode = s.mode[row];
  if (mode == kKeyAllRemoved) {  // the processors removed every token: the raw arg-max
    const float* raw = p.logits + row * p.logits_stride;
    const ArgMax best = block_argmax(
        V, [&](int64_t i) { return raw[i]; }, sh);
    if (threadIdx.x == 0) p.out_tokens[row] = best.id;
    return;
  }
  const uint32_t* keys = sorted_keys + row * V;
  const SortedWeights weight{keys, mode, s.base[row], from_order_key(keys[0]),
                             static_cast<double>(r.temperature)};

  // Candidates (w > 0) form a prefix of the sorted row.
  int local = 0;
  for (int j = threadIdx.x; j < V; j += kThreads) local += weight(j) > 0;
  int keep = block_sum_int(local, sh);

  if (r.top_k > 0 && r.top_k < keep) keep = r.top_k;

  if (r.min_p > 0) {  // drop from the first w < min_p * w_max on (NaN: off)
    const double threshold = static_cast<double>(r.min_p) * weight(0);
    int first = keep;
    for (int j = 1 + threadIdx.x; j < keep; j += kThreads)
      if (weight(j) < threshold) {
        first = j;
        break;  // j only grows along a thread's stride
      }
    keep = block_min_int(first, sh);
  }

  if (r.top_p < 1) {  // the smallest prefix whose mass is >= top_p * M (NaN: off)
    double local_mass = 0;
    for (int j = threadIdx.x; j < keep; j += kThreads) local_mass += weight(j);
    const double mass = block_sum_double(local_mass, sh);
    const double target = static_cast<double>(r.top_p) * mass;
    const int j = first_crossing<false>(weight, keep, target, sh);
    if (j < keep) keep = j + 1;
  }

  double local_mass = 0;
  for (int j = threadIdx.x; j < keep; j += kThreads) local_mass += weight(j);
  const double mass = block_sum_double(local_mass, sh);
  const double target = uniform_of(r.seed, r.position) * mass;
  int j = first_crossing<true>(weight, keep, target, sh);
  if (j >= keep) j = keep - 1;  // rounding left no crossing: the last kept token, as the twin
  const int32_t token = canonical_id_at(weight, keys, ids, V, j, sh);
  if (threadIdx.x == 0) p.out_tokens[row] = token;
}

// Up to this many rows a step sorts each row with the device-wide radix sort (many blocks per
// row) instead of the segmented sort, which gives a segment one block. Both are stable LSD radix
// sorts of the same keys over the same bits, so the order is the same. Greedy rows are sorted too
// (their scratch is unused): the host does not know which rows are sampled (they live on the
// device, and a captured graph replays one launch sequence for any mix). Measured on an H100 at
// the model's 163,840 logits: one sampled row (T = 1, top_p = 0.9) 1,218 -> 422 us, one greedy
// row 40 -> 60 us; with 8 rows the device-wide sorts cost 940 us sampled (segmented ~1.3 ms) but
// 404 us greedy (segmented ~40 us), so only single-row steps (batch-1 decode) take this path.
constexpr int64_t kPerRowSortMaxRows = 1;

size_t sort_temp_bytes(int64_t rows, int64_t vocab) {
  size_t segmented = 0, per_row = 0;
  cub::DoubleBuffer<uint32_t> keys(nullptr, nullptr);
  cub::DoubleBuffer<int32_t> ids(nullptr, nullptr);
  KL_CUDA_CHECK(cub::DeviceSegmentedRadixSort::SortPairsDescending(
      nullptr, segmented, keys, ids, static_cast<int>(rows * vocab), static_cast<int>(rows),
      static_cast<const int*>(nullptr), static_cast<const int*>(nullptr)));
  KL_CUDA_CHECK(cub::DeviceRadixSort::SortPairsDescending(nullptr, per_row, keys, ids,
                                                          static_cast<int>(vocab)));
  return std::max(segmented, per_row);
}

}  // namespace

struct GpuSampler::Impl {
  int64_t max_rows = 0;
  int64_t vocab = 0;
  int32_t max_logprobs = 0;
  uint32_t* keys[2] = {nullptr, nullptr};  // [max_rows, vocab]
  int32_t* ids[2] = {nullptr, nullptr};    // [max_rows, vocab]
  int* seg_begin = nullptr;                // [max_rows]
  int* seg_end = nullptr;                  // [max_rows]
  int* mode = nullptr;                     // [max_rows] KeyMode
  unsigned long long* base = nullptr;      // [max_rows]
  void* sort_temp = nullptr;
  size_t sort_temp_bytes = 0;
  int64_t bytes = 0;

  void* alloc(size_t n) {
    void* ptr = nullptr;
    KL_CUDA_CHECK(cudaMalloc(&ptr, n));
    bytes += static_cast<int64_t>(n);
    return ptr;
  }
  ~Impl() {
    for (void* ptr :
         {static_cast<void*>(keys[0]), static_cast<void*>(keys[1]), static_cast<void*>(ids[0]),
          static_cast<void*>(ids[1]), static_cast<void*>(seg_begin), static_cast<void*>(seg_end),
          static_cast<void*>(mode), static_cast<void*>(base), sort_temp})
      if (ptr) cudaFree(ptr);
  }
};

GpuSampler::GpuSampler(int64_t max_rows, int64_t vocab, int32_t max_logprobs)
    : impl_(std::make_unique<Impl>()) {
  KL_CHECK(max_rows > 0, "GpuSampler: max_rows {} must be positive", max_rows);
  KL_CHECK(vocab > 0, "GpuSampler: vocab {} must be positive", vocab);
  // The segmented sort indexes items with int; the bitmap of penalised tokens lives in shared
  // memory (V / 8 bytes).
  KL_CHECK(max_rows * vocab <= 0x7fffffff, "GpuSampler: max_rows {} x vocab {} exceeds 2^31 - 1",
           max_rows, vocab);
  KL_CHECK(vocab <= (1 << 20), "GpuSampler: vocab {} above 2^20 (shared-memory bitmap)", vocab);
  KL_CHECK(max_logprobs >= 0 && max_logprobs <= 1024,
           "GpuSampler: max_logprobs {} outside [0, 1024]", max_logprobs);
  Impl& m = *impl_;
  m.max_rows = max_rows;
  m.vocab = vocab;
  m.max_logprobs = max_logprobs;
  const size_t n = static_cast<size_t>(max_rows * vocab);
  for (int b = 0; b < 2; ++b) {
    m.keys[b] = static_cast<uint32_t*>(m.alloc(n * sizeof(uint32_t)));
    m.ids[b] = static_cast<int32_t*>(m.alloc(n * sizeof(int32_t)));
  }
  m.seg_begin = static_cast<int*>(m.alloc(static_cast<size_t>(max_rows) * sizeof(int)));
  m.seg_end = static_cast<int*>(m.alloc(static_cast<size_t>(max_rows) * sizeof(int)));
  m.mode = static_cast<int*>(m.alloc(static_cast<size_t>(max_rows) * sizeof(int)));
  m.base = static_cast<unsigned long long*>(
      m.alloc(static_cast<size_t>(max_rows) * sizeof(unsigned long long)));
  m.sort_temp_bytes = sort_temp_bytes(max_rows, vocab);
  m.sort_temp = m.alloc(m.sort_temp_bytes);
  const int bitmap_bytes = static_cast<int>((vocab + 31) / 32 * 4);
  if (bitmap_bytes + static_cast<int>(sizeof(BlockShared)) > 48 * 1024)
    KL_CUDA_CHECK(cudaFuncSetAttribute(process_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       bitmap_bytes));
}

GpuSampler::~GpuSampler() = default;

int64_t GpuSampler::workspace_bytes() const {
  return impl_->bytes;
}

int32_t GpuSampler::max_logprobs() const {
  return impl_->max_logprobs;
}

void GpuSampler::run(const SamplingCudaParams& p_in, CudaStream stream) {
  Impl& m = *impl_;
  SamplingCudaParams p = p_in;
  if (p.logits_stride == 0) p.logits_stride = p.vocab;
  KL_CHECK(p.num_rows >= 0 && p.num_rows <= m.max_rows,
           "GpuSampler::run: num_rows {} outside [0, max_rows {}]", p.num_rows, m.max_rows);
  KL_CHECK(p.vocab > 0 && p.vocab <= m.vocab, "GpuSampler::run: vocab {} outside [1, {}]", p.vocab,
           m.vocab);
  KL_CHECK(p.logits_stride >= p.vocab, "GpuSampler::run: logits_stride {} below vocab {}",
           p.logits_stride, p.vocab);
  if (p.num_rows == 0) return;
  KL_CHECK(p.logits && p.rows && p.out_tokens, "GpuSampler::run: null logits, rows or out_tokens");
  // The histories and the logprob outputs may be null when no row uses them (not checkable here
  // without reading the rows back).
  const RowScratch s{m.keys[0], m.ids[0], m.ids[1], m.mode, m.base};
  const int bitmap_bytes = static_cast<int>((p.vocab + 31) / 32 * 4);
  const unsigned rows = static_cast<unsigned>(p.num_rows);
  process_kernel<<<rows, kThreads, bitmap_bytes, stream>>>(p, s, m.seg_begin, m.seg_end);
  KL_CUDA_CHECK_LAUNCH("GpuSampler: process_kernel");

  // The sort's buffer selector after the call depends only on the key bits and the item count,
  // not on the data: the host knows where the result is without waiting.
  const uint32_t* sorted_keys = nullptr;
  const int32_t* sorted_ids = nullptr;
  if (p.num_rows <= kPerRowSortMaxRows) {
    const int V = static_cast<int>(p.vocab);
    for (int64_t r = 0; r < p.num_rows; ++r) {
      cub::DoubleBuffer<uint32_t> keys(m.keys[0] + r * V, m.keys[1] + r * V);
      cub::DoubleBuffer<int32_t> ids(m.ids[0] + r * V, m.ids[1] + r * V);
      size_t temp = 0;
      KL_CUDA_CHECK(cub::DeviceRadixSort::SortPairsDescending(nullptr, temp, keys, ids, V));
      KL_CHECK(temp <= m.sort_temp_bytes,
               "GpuSampler::run: sort needs {} bytes of scratch, have {}", temp, m.sort_temp_bytes);
      KL_CUDA_CHECK(cub::DeviceRadixSort::SortPairsDescending(m.sort_temp, temp, keys, ids, V, 0,
                                                              32, stream));
      const int sel = keys.selector;
      KL_CHECK(r == 0 || (sorted_keys == m.keys[sel] && sorted_ids == m.ids[ids.selector]),
               "GpuSampler::run: rows sorted into different buffers");
      sorted_keys = m.keys[sel];
      sorted_ids = m.ids[ids.selector];
    }
  } else {
    cub::DoubleBuffer<uint32_t> keys(m.keys[0], m.keys[1]);
    cub::DoubleBuffer<int32_t> ids(m.ids[0], m.ids[1]);
    const int num_items = static_cast<int>(p.num_rows * p.vocab);
    size_t temp = 0;
    KL_CUDA_CHECK(cub::DeviceSegmentedRadixSort::SortPairsDescending(
        nullptr, temp, keys, ids, num_items, static_cast<int>(p.num_rows), m.seg_begin, m.seg_end));
    KL_CHECK(temp <= m.sort_temp_bytes, "GpuSampler::run: sort needs {} bytes of scratch, have {}",
             temp, m.sort_temp_bytes);
    KL_CUDA_CHECK(cub::DeviceSegmentedRadixSort::SortPairsDescending(
        m.sort_temp, temp, keys, ids, num_items, static_cast<int>(p.num_rows), m.seg_begin,
        m.seg_end, 0, 32, stream));
    sorted_keys = keys.Current();
    sorted_ids = ids.Current();
  }

  draw_kernel<<<rows, kThreads, 0, stream>>>(p, s, sorted_keys, sorted_ids);
  KL_CUDA_CHECK_LAUNCH("GpuSampler: draw_kernel");
  sampling_detail::launch_logprobs(p, m.max_logprobs, stream);
}

}  // namespace kl::kernels
