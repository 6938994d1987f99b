// Timings of the decode-side KDA kernels at the model's dims (hidden test, run with
// "[.kda_bench]"): recurrent core and short conv for decode batches and short chunks, bf16
// activations. Prints the time per call and the state bytes moved per second (the recurrent core's
// floor).
#include <catch2/catch.hpp>

#include <cstdio>

#include <cuda_runtime.h>

#include "kernels/conv/short_conv_cuda.h"
#include "kernels/kda/kda_cuda.h"
#include "tests/gpu/kda_gpu_util.h"

using namespace kl;
using namespace kl::kernels;
using namespace kl::test;
using namespace kl::test::kda;

namespace {

template <typename F>
float time_us(F&& launch, int iters = 50) {
  launch();  // warm-up
  cudaEvent_t a, b;
  cuda_ok(cudaEventCreate(&a), "event");
  cuda_ok(cudaEventCreate(&b), "event");
  cuda_ok(cudaEventRecord(a), "record");
  for (int i = 0; i < iters; ++i) launch();
  cuda_ok(cudaEventRecord(b), "record");
  cuda_ok(cudaEventSynchronize(b), "sync");
  float ms = 0;
  cuda_ok(cudaEventElapsedTime(&ms, a, b), "elapsed");
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  return ms * 1000.f / iters;
}

}  // namespace

TEST_CASE("kda decode-side kernel timings (bf16)", "[.kda_bench]") {
  using T = __nv_bfloat16;
  const int64_t H = kHeads, K = kHeadDim, V = kHeadDim;
  for (auto [num_seqs, len] : {std::pair{1, 1}, {64, 1}, {256, 1}, {8, 64}, {1, 512}}) {
    const int64_t n = int64_t{num_seqs} * len;
    std::vector<int> lens(num_seqs, len);
    std::vector<int32_t> blocks(num_seqs);
    for (int s = 0; s < num_seqs; ++s) blocks[s] = s;
    const auto cu = cu_seqlens_of(lens);
    ActBuffer<T> q(random_normal(n * H * K, 1, 0.1f)), k(random_normal(n * H * K, 2, 0.1f)),
        v(random_normal(n * H * V, 3)), out(static_cast<size_t>(n * H * V));
    DeviceBuffer<float> g(random_uniform(n * H * K, 4, -1.f, 0.f)),
        beta(random_uniform(n * H, 5, 0.f, 1.f)), states(num_seqs * H * V * K);
    DeviceBuffer<int32_t> dcu(cu), dblocks(blocks);
    KdaCudaParams<T> p;
    p.q = q.get();
    p.k = k.get();
    p.v = v.get();
    p.g = g.get();
    p.beta = beta.get();
    p.num_tokens = n;
    p.num_seqs = num_seqs;
    p.cu_seqlens = dcu.get();
    p.state_blocks = dblocks.get();
    p.max_seqlen = len;
    p.num_heads = H;
    p.head_k = K;
    p.head_v = V;
    p.scale = 0.088f;
    p.states = states.get();
    p.out = out.get();
    const float us = time_us([&] { kda_recurrent_cuda<T>(p, nullptr); });
    const double state_bytes = 2.0 * num_seqs * H * V * K * 4;
    std::printf("kda_recurrent bf16: %3d seqs x %3d tokens: %8.2f us  (state %6.1f GB/s)\n",
                num_seqs, len, us, state_bytes / us * 1e-3);

    const int64_t dim = kConvDim;
    ActBuffer<T> x(random_normal(n * dim, 6)), cout(static_cast<size_t>(n * dim)),
        windows(random_normal(num_seqs * 3 * dim, 7));
    DeviceBuffer<uint16_t> w(to_bf16(random_normal(dim * 4, 8)));
    ShortConvCudaParams<T> c;
    c.x = x.get();
    c.num_tokens = n;
    c.dim = dim;
    c.num_seqs = num_seqs;
    c.cu_seqlens = dcu.get();
    c.state_blocks = dblocks.get();
    c.max_seqlen = len;
    c.weight = {w.get(), DType::kBF16, dim, 4};
    c.windows = windows.get();
    c.window_block_stride = 3 * dim;
    c.out = cout.get();
    const float cus = time_us([&] { short_conv_cuda<T>(c, nullptr); });
    std::printf("short_conv    bf16: %3d seqs x %3d tokens: %8.2f us\n", num_seqs, len, cus);
  }
  cuda_ok(cudaGetLastError(), "bench");
}
