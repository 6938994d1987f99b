// Raw-distribution log-probabilities of the GPU sampler, as sample_row_ref reports them:
// log_softmax of the unprocessed logits (log_softmax_ref: double sum, the limit cases of -inf and
// +inf maxima), the chosen token's value and the best n values, descending with ties to the lower
// id. The best n come from a radix select on the fp32 log-probabilities (four 8-bit histogram
// passes), so the order is that of the values the twin sorts, not of the logits (distinct logits
// can round to one log-probability, and then the lower id goes first there too).
#include <cuda_runtime.h>

#include "engine/core/error.h"
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/sampling/sampling_device.cuh"
#include "kernels/sampling/sampling_internal.h"

namespace kl::kernels::sampling_detail {
namespace {

// log_softmax_ref of one raw logit, given the row's statistics.
struct RawLogSoftmax {
  float max_l;
  double lse;    // finite max: max + log(sum exp(x - max))
  float lp_inf;  // +inf max: -log(number of +inf tokens)
  __device__ float operator()(float raw) const {
    if (max_l == -kInfF) return -kInfF;
    if (max_l == kInfF) return raw == kInfF ? lp_inf : -kInfF;
    return static_cast<float>(static_cast<double>(nan_to_neg_inf(raw)) - lse);
  }
};

struct SelectShared {
  int hist[256];
  uint32_t prefix;
  int remaining;
  int num_greater;
};

// One block per row with num_logprobs >= 0.
__global__ void __launch_bounds__(kThreads) logprobs_kernel(SamplingCudaParams p, int32_t max_lp) {
  __shared__ BlockShared sh;
  __shared__ SelectShared sel;
  extern __shared__ int32_t dyn[];  // [max_lp] greater ids, [max_lp] their lp, [max_lp] tie ids
  int32_t* greater_ids = dyn;
  float* greater_lp = reinterpret_cast<float*>(dyn + max_lp);
  int32_t* tie_ids = dyn + 2 * max_lp;

  const int64_t row = blockIdx.x;
  const GpuSamplingRow r = p.rows[row];
  if (r.num_logprobs < 0) return;
  const int V = static_cast<int>(p.vocab);
  const float* raw = p.logits + row * p.logits_stride;

  float local_max = -kInfF;
  for (int i = threadIdx.x; i < V; i += kThreads)
    local_max = fmaxf(local_max, nan_to_neg_inf(raw[i]));
  RawLogSoftmax lsm{block_max_float(local_max, sh), 0.0, 0.f};
  if (lsm.max_l == kInfF) {
    int local = 0;
    for (int i = threadIdx.x; i < V; i += kThreads) local += raw[i] == kInfF;
    lsm.lp_inf = static_cast<float>(-log(static_cast<double>(block_sum_int(local, sh))));
  } else if (lsm.max_l != -kInfF) {
    double local = 0;
    const double m = lsm.max_l;
    for (int i = threadIdx.x; i < V; i += kThreads)
      local += exp(static_cast<double>(nan_to_neg_inf(raw[i])) - m);
    lsm.lse = m + log(block_sum_double(local, sh));
  }
  if (threadIdx.x == 0 && p.out_logprobs) p.out_logprobs[row] = lsm(raw[p.out_tokens[row]]);
  if (!p.out_top_tokens || !p.out_top_logprobs) return;

  const int k = min(min(r.num_logprobs, max_lp), V);
  int32_t* top_tokens = p.out_top_tokens + row * max_lp;
  float* top_lp = p.out_top_logprobs + row * max_lp;
  for (int j = k + threadIdx.x; j < max_lp; j += kThreads) {
    top_tokens[j] = -1;
    top_lp[j] = -kInfF;
  }
  if (k == 0) return;

  // Radix select of the k-th best key, most significant byte first: `prefix` holds the bytes fixed
  // so far, `remaining` how many of the tokens matching it are still to be taken.
  uint32_t prefix = 0;
  int remaining = k;
  for (int shift = 24; shift >= 0; shift -= 8) {
    for (int b = threadIdx.x; b < 256; b += kThreads) sel.hist[b] = 0;
    __syncthreads();
    const uint32_t fixed = shift == 24 ? 0u : (0xffffffffu << (shift + 8));
    for (int i = threadIdx.x; i < V; i += kThreads) {
      const uint32_t key = order_key(lsm(raw[i]));
      if ((key & fixed) == prefix) atomicAdd(&sel.hist[(key >> shift) & 255u], 1);
    }
    __syncthreads();
    if (threadIdx.x == 0) {
      int above = 0;
      for (int b = 255; b >= 0; --b) {
        if (above + sel.hist[b] >= remaining) {
          sel.prefix = prefix | (static_cast<uint32_t>(b) << shift);
          sel.remaining = remaining - above;
          break;
        }
        above += sel.hist[b];
      }
      sel.num_greater = 0;
    }
    __syncthreads();
    prefix = sel.prefix;
    remaining = sel.remaining;
    __syncthreads();
  }
  // prefix is now the k-th best key: the k - remaining tokens above it in any order, then the
  // `remaining` lowest ids equal to it.
  for (int i = threadIdx.x; i < V; i += kThreads) {
    const float lp = lsm(raw[i]);
    if (order_key(lp) > prefix) {
      const int slot = atomicAdd(&sel.num_greater, 1);
      greater_ids[slot] = i;
      greater_lp[slot] = lp;
    }
  }
  int taken = 0;
  for (int base = 0; base < V && taken < remaining; base += kThreads) {
    const int i = base + threadIdx.x;
    const int flag = i < V && order_key(lsm(raw[i])) == prefix;
    int rank, total;
    cub::BlockScan<int, kThreads>(sh.temp.iscan).ExclusiveSum(flag, rank, total);
    if (flag && taken + rank < remaining) tie_ids[taken + rank] = i;
    taken += total;
    __syncthreads();
  }
  __syncthreads();
  const int num_greater = sel.num_greater;  // == k - remaining
  for (int s = threadIdx.x; s < num_greater; s += kThreads) {
    int rank = 0;
    for (int o = 0; o < num_greater; ++o)
      rank += greater_lp[o] > greater_lp[s] ||
              (greater_lp[o] == greater_lp[s] && greater_ids[o] < greater_ids[s]);
    top_tokens[rank] = greater_ids[s];
    top_lp[rank] = greater_lp[s];
  }
  for (int q = threadIdx.x; q < remaining; q += kThreads) {
    top_tokens[num_greater + q] = tie_ids[q];
    top_lp[num_greater + q] = lsm(raw[tie_ids[q]]);
  }
}

}  // namespace

void launch_logprobs(const SamplingCudaParams& p, int32_t max_logprobs, CudaStream stream) {
  const size_t dyn = static_cast<size_t>(max_logprobs) * 3 * sizeof(int32_t);
  logprobs_kernel<<<static_cast<unsigned>(p.num_rows), kThreads, dyn, stream>>>(p, max_logprobs);
  KL_CUDA_CHECK_LAUNCH("GpuSampler: logprobs_kernel");
}

}  // namespace kl::kernels::sampling_detail
