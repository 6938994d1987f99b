// Timings of MlaAttentionRunner::attention (bf16, model dims) for a few decode and prefill shapes;
// hidden ([.]): run with the tag [mla_perf]. Values are constant (memset): timing only.
#include <catch2/catch.hpp>

#include <cstdio>
#include <vector>

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "kernels/gemm/gemm_cuda.h"
#include "kernels/mla/mla_cuda.h"
#include "tests/gpu/device_buffer.h"

using namespace kl;
using namespace kl::kernels;
using namespace kl::test;

namespace {

constexpr int64_t kH = 32, kPage = 64;

void time_step(const char* what, int num_seqs, int num_computed, int num_rows) {
  std::vector<MlaSeqSpan> seqs;
  const int64_t keys = num_computed + num_rows;
  const int64_t pages_per_seq = (keys + kPage - 1) / kPage;
  std::vector<int32_t> tables(num_seqs * pages_per_seq);
  for (size_t i = 0; i < tables.size(); ++i) tables[i] = static_cast<int32_t>(i);
  for (int s = 0; s < num_seqs; ++s) seqs.push_back({s * num_rows, num_rows, num_computed});
  const int64_t tokens = int64_t{num_seqs} * num_rows;
  DeviceBuffer<uint16_t> q(tokens * kH * 192), out(tokens * kH * 128);
  DeviceBuffer<uint16_t> cache(tables.size() * kPage * 576), kv_b(kH * 256 * 512);
  cuda_ok(cudaMemset(cache.get(), 0x3c, cache.bytes()), "memset");
  cuda_ok(cudaMemset(q.get(), 0x3c, q.bytes()), "memset");
  cuda_ok(cudaMemset(kv_b.get(), 0x3c, kv_b.bytes()), "memset");
  DeviceBuffer<int32_t> pages(tables);
  DeviceBuffer<MlaSeqSpan> seqs_dev(seqs);
  GemmRunner gemm;
  MlaAttentionRunner runner(MlaDims{}, tokens, true);
  MlaAttentionCudaParams<__nv_bfloat16> p;
  p.q = reinterpret_cast<const __nv_bfloat16*>(q.get());
  p.num_tokens = tokens;
  p.kv_b = {kv_b.get(), DType::kBF16, kH * 256, 512};
  p.cache = reinterpret_cast<const __nv_bfloat16*>(cache.get());
  p.num_pages = static_cast<int64_t>(tables.size());
  p.page_tables = pages.get();
  p.page_table_stride = pages_per_seq;
  p.seqs = seqs.data();
  p.seqs_dev = seqs_dev.get();
  p.num_seqs = num_seqs;
  p.out = reinterpret_cast<__nv_bfloat16*>(out.get());
  runner.attention(gemm, p, nullptr);  // warm-up (GEMM plans)
  cudaEvent_t start, stop;
  cuda_ok(cudaEventCreate(&start), "event");
  cuda_ok(cudaEventCreate(&stop), "event");
  constexpr int kIters = 10;
  cuda_ok(cudaEventRecord(start), "record");
  for (int i = 0; i < kIters; ++i) runner.attention(gemm, p, nullptr);
  cuda_ok(cudaEventRecord(stop), "record");
  cuda_ok(cudaEventSynchronize(stop), "sync");
  float ms = 0.f;
  cuda_ok(cudaEventElapsedTime(&ms, start, stop), "elapsed");
  std::printf("mla perf %-34s %8.3f ms/call (workspace %lld MiB)\n", what, ms / kIters,
              static_cast<long long>(runner.workspace_bytes() >> 20));
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
}

}  // namespace

TEST_CASE("mla attention timings (bf16)", "[.][mla_perf]") {
  time_step("decode 64 x 4096 keys", 64, 4095, 1);
  time_step("decode 256 x 2048 keys", 256, 2047, 1);
  time_step("decode 1 x 32768 keys", 1, 32767, 1);
  time_step("prefill 1 x 4096 new", 1, 0, 4096);
  time_step("prefill 1 x 2048 new + 8192 cached", 1, 8192, 2048);
}
