// Device helpers of the GPU sampler (sampling.cu, sampling_logprobs.cu): the counter-based uniform
// of sampling_uniform, NaN handling as in sampling_ref.cpp, and the block-wide reductions (arg-max
// with the lowest id on ties, double sums, counts) the per-row kernels share. Include only from
// .cu.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include <cub/block/block_reduce.cuh>
#include <cub/block/block_scan.cuh>
#include <cuda/functional>
#include <cuda/std/functional>

#include "kernels/sampling/sampling_cuda.h"

namespace kl::kernels::sampling_detail {

// Every per-row kernel runs one block of this many threads per row.
constexpr int kThreads = 512;
constexpr float kInfF = __builtin_huge_valf();

__device__ __forceinline__ float nan_to_neg_inf(float x) {
  return isnan(x) ? -kInfF : x;
}

__device__ __forceinline__ bool in_vocab(int64_t t, int64_t vocab) {
  return t >= 0 && t < vocab;
}

// The same splitmix64 step and uniform as sampling_uniform() in sampling_ref.cpp: integer ops and
// an exact scaling, so the value is bit-identical to the CPU's.
__device__ __forceinline__ uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

__device__ __forceinline__ double uniform_of(uint64_t seed, uint64_t position) {
  const uint64_t x = splitmix64(splitmix64(seed) ^ position);
  return static_cast<double>(x >> 11) * 0x1.0p-53;
}

// "Not above" the threshold, so that a NaN temperature is greedy (as is_greedy in the twin).
__device__ __forceinline__ bool is_greedy(const GpuSamplingRow& r) {
  return !(r.temperature > 1e-5f);  // kGreedyTemperature (sampling.h is host-only C++20)
}

// An unsigned key with the order of the float (no NaN reaches it), and its inverse.
__device__ __forceinline__ uint32_t order_key(float f) {
  const uint32_t u = __float_as_uint(f);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}
__device__ __forceinline__ float from_order_key(uint32_t k) {
  return __uint_as_float((k & 0x80000000u) ? (k & 0x7fffffffu) : ~k);
}

// A value and its token id; the better one is larger, and on equal values the lower id.
struct ArgMax {
  float v;
  int32_t id;
};

__device__ __forceinline__ ArgMax better_of(ArgMax a, ArgMax b) {
  return (b.v > a.v || (b.v == a.v && b.id < a.id)) ? b : a;
}

struct BetterOf {
  __device__ __forceinline__ ArgMax operator()(const ArgMax& a, const ArgMax& b) const {
    return better_of(a, b);
  }
};

// The shared memory of the block-wide helpers below; one per kernel, reused call after call
// (each helper ends with a barrier so the next call may overwrite it).
union BlockTemp {
  typename cub::BlockReduce<ArgMax, kThreads>::TempStorage argmax;
  typename cub::BlockReduce<double, kThreads>::TempStorage dsum;
  typename cub::BlockReduce<int, kThreads>::TempStorage isum;
  typename cub::BlockReduce<float, kThreads>::TempStorage fmax;
  typename cub::BlockScan<double, kThreads>::TempStorage dscan;
  typename cub::BlockScan<int, kThreads>::TempStorage iscan;
};

struct BlockShared {
  BlockTemp temp;
  ArgMax argmax;
  double d;
  int i;
  float f;
};

// Arg-max of value(i) over [0, n), NaN as -inf, lowest id on ties; id 0 when all are -inf. Every
// thread gets the result.
template <typename ValueFn>
__device__ ArgMax block_argmax(int64_t n, ValueFn value, BlockShared& sh) {
  ArgMax best{-kInfF, 0x7fffffff};
  for (int64_t i = threadIdx.x; i < n; i += kThreads)
    best = better_of(best, ArgMax{nan_to_neg_inf(value(i)), static_cast<int32_t>(i)});
  const ArgMax r = cub::BlockReduce<ArgMax, kThreads>(sh.temp.argmax).Reduce(best, BetterOf{});
  if (threadIdx.x == 0) sh.argmax = r;
  __syncthreads();
  const ArgMax out = sh.argmax;
  __syncthreads();
  return out;
}

template <typename T, typename Op>
__device__ T block_reduce_bcast(T v, Op op,
                                typename cub::BlockReduce<T, kThreads>::TempStorage& tmp, T& slot) {
  const T r = cub::BlockReduce<T, kThreads>(tmp).Reduce(v, op);
  if (threadIdx.x == 0) slot = r;
  __syncthreads();
  const T out = slot;
  __syncthreads();
  return out;
}

__device__ __forceinline__ double block_sum_double(double v, BlockShared& sh) {
  return block_reduce_bcast(v, ::cuda::std::plus<>{}, sh.temp.dsum, sh.d);
}
__device__ __forceinline__ int block_sum_int(int v, BlockShared& sh) {
  return block_reduce_bcast(v, ::cuda::std::plus<>{}, sh.temp.isum, sh.i);
}
__device__ __forceinline__ int block_min_int(int v, BlockShared& sh) {
  return block_reduce_bcast(v, ::cuda::minimum<>{}, sh.temp.isum, sh.i);
}
__device__ __forceinline__ float block_max_float(float v, BlockShared& sh) {
  return block_reduce_bcast(v, ::cuda::maximum<>{}, sh.temp.fmax, sh.f);
}

}  // namespace kl::kernels::sampling_detail
