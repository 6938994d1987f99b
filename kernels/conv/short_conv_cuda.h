// Short causal depthwise convolution + SiLU on the GPU over a varlen batch (prefill chunks and
// decode tokens alike), carrying each sequence's window in its KDA state block. Same semantics
// per sequence as short_conv_ref (kernels/conv/short_conv.h): the window holds the last W-1
// pre-conv inputs (oldest first), is read as the history before the chunk's first token and is
// left holding the chunk's last W-1 inputs (shifted when the chunk is shorter than W-1).
#pragma once

#include <cstdint>

#include "engine/core/weight_view.h"
#include "kernels/cuda/cuda_fwd.h"

namespace kl::kernels {

template <typename T>
struct ShortConvCudaParams {
  const T* x = nullptr;  // [num_tokens, dim] device pre-conv projections, row stride x_stride
  int64_t x_stride = 0;  // 0 = dim
  int64_t num_tokens = 0;
  int64_t dim = 0;
  int num_seqs = 0;
  const int32_t* cu_seqlens = nullptr;    // [num_seqs + 1] device: rows of sequence s
  const int32_t* state_blocks = nullptr;  // [num_seqs] device: state block of sequence s
  int64_t max_seqlen = 0;                 // host: the longest chunk (grid sizing)
  int kernel_size = 4;                    // W
  WeightView weight;                      // [dim, W] device; tap W-1 multiplies the current token
  // Window of state block b: windows + b * window_block_stride, [W-1, dim] in T, oldest first.
  T* windows = nullptr;
  int64_t window_block_stride = 0;
  bool apply_silu = true;
  T* out = nullptr;  // [num_tokens, dim] device, dense; must not alias x
};

template <typename T>
void short_conv_cuda(const ShortConvCudaParams<T>& p, CudaStream stream);

}  // namespace kl::kernels
