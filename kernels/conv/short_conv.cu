// CUDA short causal depthwise conv (+ SiLU) over a varlen batch with the window of the last W-1
// pre-conv inputs carried in each sequence's state block (same function as short_conv_ref).
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "kernels/conv/short_conv_cuda.h"
#include "kernels/cuda/cuda_common.cuh"

namespace kl::kernels {
namespace {

using cuda::ceil_div;
using cuda::from_f32;
using cuda::to_f32;

constexpr int kMaxKernelSize = 8;
constexpr int kChannelsPerBlock = 128;

struct SeqRange {
  int32_t seq;    // index into cu_seqlens / state_blocks
  int32_t begin;  // first row
  int32_t end;    // one past the last row
};

// The sequence containing row t (the last s with cu[s] <= t < cu[s+1]; empty sequences skipped).
// Every thread of a block searches for the same row, so the loads are L1 broadcasts.
__device__ SeqRange sequence_of(const int32_t* cu, int num_seqs, int64_t t) {
  int lo = 0, hi = num_seqs - 1;  // invariant: cu[lo] <= t, answer in [lo, hi]
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (cu[mid] <= t) {
      lo = mid;
    } else {
      hi = mid - 1;
    }
  }
  return {lo, cu[lo], cu[lo + 1]};
}

// One thread per (row, channel): its W inputs (earlier rows of the chunk or the carried window)
// are independent loads, so a decode batch or a prefill chunk is one latency deep. A one-row
// chunk (decode) has a single reader of each window column, which therefore shifts the window in
// place; longer chunks have several readers and leave the rewrite to short_conv_window_kernel.
template <typename T, int W>
__global__ void short_conv_kernel(ShortConvCudaParams<T> p) {
  constexpr int kHist = W - 1;
  const int64_t c = static_cast<int64_t>(blockIdx.y) * blockDim.x + threadIdx.x;
  const int64_t t = blockIdx.x;
  if (c >= p.dim) return;
  const int64_t x_stride = p.x_stride ? p.x_stride : p.dim;
  const SeqRange s = sequence_of(p.cu_seqlens, p.num_seqs, t);

  T* window = nullptr;
  if constexpr (kHist > 0) {
    if (t - kHist < s.begin) window = p.windows + p.state_blocks[s.seq] * p.window_block_stride;
  }
  float in[W];  // inputs at rows t - kHist .. t, oldest first
#pragma unroll
  for (int j = 0; j < W; ++j) {
    const int64_t time = t - kHist + j;  // < s.begin reads the window
    in[j] = time >= s.begin ? to_f32(p.x[time * x_stride + c])
                            : to_f32(window[(kHist + time - s.begin) * p.dim + c]);
  }
  // Same order and rounding as short_conv_ref: oldest tap first, separate multiply and add.
  float acc = 0.f;
#pragma unroll
  for (int j = 0; j < W; ++j) {
    acc = __fadd_rn(acc,
                    __fmul_rn(cuda::load_weight(p.weight.data, p.weight.dtype, c * W + j), in[j]));
  }
  if (p.apply_silu) acc = acc / (1.f + expf(-acc));
  p.out[t * p.dim + c] = from_f32<T>(acc);

  if constexpr (kHist > 0) {
    if (s.end - s.begin == 1) {
#pragma unroll
      for (int j = 0; j < kHist; ++j) window[j * p.dim + c] = from_f32<T>(in[j + 1]);
    }
  }
}

// Window rewrite of the chunks of two or more rows, after the conv kernel has read every window:
// one thread per (sequence, channel) reads its new kHist inputs into registers first, so a chunk
// shorter than kHist may shift the old window in place.
template <typename T, int W>
__global__ void short_conv_window_kernel(ShortConvCudaParams<T> p) {
  constexpr int kHist = W - 1;
  const int64_t c = static_cast<int64_t>(blockIdx.y) * blockDim.x + threadIdx.x;
  const int seq = blockIdx.x;
  if (c >= p.dim) return;
  const int32_t begin = p.cu_seqlens[seq];
  const int32_t end = p.cu_seqlens[seq + 1];
  if (end - begin <= 1) return;  // unchanged, or shifted by short_conv_kernel
  const int64_t x_stride = p.x_stride ? p.x_stride : p.dim;
  T* window = p.windows + p.state_blocks[seq] * p.window_block_stride;
  T next[kHist];
#pragma unroll
  for (int j = 0; j < kHist; ++j) {
    const int64_t time = static_cast<int64_t>(end) - kHist + j;
    next[j] = time >= begin ? p.x[time * x_stride + c] : window[(kHist + time - begin) * p.dim + c];
  }
#pragma unroll
  for (int j = 0; j < kHist; ++j) window[j * p.dim + c] = next[j];
}

template <typename T, int W>
void launch(const ShortConvCudaParams<T>& p, cudaStream_t stream) {
  const unsigned channel_blocks = static_cast<unsigned>(ceil_div(p.dim, kChannelsPerBlock));
  const dim3 grid(static_cast<unsigned>(p.num_tokens), channel_blocks);
  short_conv_kernel<T, W><<<grid, kChannelsPerBlock, 0, stream>>>(p);
  KL_CUDA_CHECK_LAUNCH("short_conv_cuda");
  // Decode batches (every chunk one row) need no second kernel.
  if constexpr (W > 1) {
    if (p.max_seqlen > 1) {
      const dim3 wgrid(static_cast<unsigned>(p.num_seqs), channel_blocks);
      short_conv_window_kernel<T, W><<<wgrid, kChannelsPerBlock, 0, stream>>>(p);
      KL_CUDA_CHECK_LAUNCH("short_conv_cuda (window)");
    }
  }
}

}  // namespace

template <typename T>
void short_conv_cuda(const ShortConvCudaParams<T>& p, CudaStream stream) {
  const int W = p.kernel_size;
  KL_CHECK(W >= 1 && W <= kMaxKernelSize, "short_conv_cuda: kernel_size {} not in [1, {}]", W,
           kMaxKernelSize);
  KL_CHECK(p.dim > 0 && p.dim <= int64_t{65535} * kChannelsPerBlock,
           "short_conv_cuda: dim {} out of range", p.dim);
  KL_CHECK(p.num_tokens >= 0 && p.num_tokens <= 0x7fffffff,
           "short_conv_cuda: num_tokens {} out of range", p.num_tokens);
  KL_CHECK(p.num_seqs >= 0, "short_conv_cuda: num_seqs {} < 0", p.num_seqs);
  KL_CHECK(p.max_seqlen >= 0 && p.max_seqlen <= p.num_tokens,
           "short_conv_cuda: max_seqlen {} not in [0, num_tokens {}]", p.max_seqlen, p.num_tokens);
  KL_CHECK(p.x_stride == 0 || p.x_stride >= p.dim, "short_conv_cuda: x_stride {} < dim {}",
           p.x_stride, p.dim);
  KL_CHECK(p.weight.numel() == p.dim * W,
           "short_conv_cuda: weight has {} values, expected dim {} x kernel_size {}",
           p.weight.numel(), p.dim, W);
  if (p.num_tokens == 0) return;
  KL_CHECK(p.num_seqs > 0, "short_conv_cuda: {} tokens but no sequence", p.num_tokens);
  KL_CHECK(p.x && p.out && p.weight.data && p.cu_seqlens,
           "short_conv_cuda: null device pointer (x, out, weight or cu_seqlens)");
  KL_CHECK(static_cast<const void*>(p.x) != static_cast<const void*>(p.out),
           "short_conv_cuda: out must not alias x");
  if (W > 1) {
    KL_CHECK(p.windows && p.state_blocks, "short_conv_cuda: kernel_size {} needs windows", W);
    KL_CHECK(p.window_block_stride >= (W - 1) * p.dim,
             "short_conv_cuda: window_block_stride {} < (kernel_size - 1) x dim = {}",
             p.window_block_stride, (W - 1) * p.dim);
  }
  auto s = static_cast<cudaStream_t>(stream);
  switch (W) {
    case 1:
      launch<T, 1>(p, s);
      break;
    case 2:
      launch<T, 2>(p, s);
      break;
    case 3:
      launch<T, 3>(p, s);
      break;
    case 4:
      launch<T, 4>(p, s);
      break;
    case 5:
      launch<T, 5>(p, s);
      break;
    case 6:
      launch<T, 6>(p, s);
      break;
    case 7:
      launch<T, 7>(p, s);
      break;
    default:
      launch<T, 8>(p, s);
      break;
  }
}

template void short_conv_cuda<float>(const ShortConvCudaParams<float>&, CudaStream);
template void short_conv_cuda<__nv_bfloat16>(const ShortConvCudaParams<__nv_bfloat16>&, CudaStream);

}  // namespace kl::kernels
