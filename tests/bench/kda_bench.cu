// kl_kda_bench: timings of klserve's KDA kernels at Kimi-Linear-48B's shapes (32 heads,
// K = V = 128, bf16 activations, fp32 V-major state) for the ROOFLINE targets
//   P5  chunked prefill, T = 8192 as 1 x 8192 and varlen 8 x 1024 (kda_chunked_cuda)
//   P4  decode, one token per sequence at batch 1 / 64 / 256 (kda_recurrent_cuda)
// Each case is timed twice: "core" (the delta-rule kernel alone, on pre-normalised q/k and
// precomputed fp32 g / beta) and "unit" (l2norm_rows_cuda on q and on k, kda_gate_cuda from the
// raw bf16 f_b_proj output, kda_beta_cuda from the raw bf16 b_proj output, then the core): the
// unit computes what fla's chunk_kda / fused_recurrent_kda compute with the gate, the q/k L2 norm
// and the beta sigmoid fused in (use_gate_in_kernel, use_qk_l2norm_in_kernel,
// use_beta_sigmoid_in_kernel). Both read the initial fp32 state and write the final one.
// scripts/bench-kda-vs-fla.sh runs this binary beside fla on the same GPU.
//
// Timing: CUDA events, warm-up, median of --iters samples. Prefill: one call per sample, eager
// launches (each call is milliseconds). Decode: a CUDA graph of several calls per sample (launch
// gaps would otherwise dominate microsecond kernels), the state rotating over enough copies that
// the set is >= 4x the L2 cache, so each call reads its state from HBM.
// Output: one JSON object per line on stdout (lines starting with '{'), then a readable table.
//   kl_kda_bench [--warmup N] [--iters N] [--only prefill|decode] [--dump DIR]
// --dump DIR also writes a small varlen prefill and a decode batch (inputs and our outputs, raw
// little-endian files, see dump_case) for scripts/kda_fla_bench.py to check fla against.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <fstream>
#include <functional>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "kernels/kda/kda_cuda.h"
#include "kernels/kda/kda_gate_cuda.h"
#include "tests/gpu/device_buffer.h"

using namespace kl;
using namespace kl::kernels;
using kl::test::cuda_ok;
using kl::test::DeviceBuffer;
using bf16 = __nv_bfloat16;

namespace {

constexpr int64_t kH = 32, kK = 128, kV = 128;  // Kimi-Linear-48B-A3B KDA heads
constexpr float kL2Eps = 1e-6f;                 // ModelConfig::kQkL2Eps
const float kScale = 1.f / std::sqrt(static_cast<float>(kK));
constexpr double kStateBytesPerSeq = double(kH) * kV * kK * 4;  // fp32 state of one layer

// ---- deterministic device-side inputs (a hash per element: no host generation of 100M values)

__device__ __forceinline__ uint64_t mix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

template <typename T>
__global__ void fill_normal_kernel(T* x, int64_t n, uint64_t seed, float stddev) {
  for (int64_t i = int64_t{blockIdx.x} * blockDim.x + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    const uint64_t h = mix64(seed * 0x100000001b3ull + static_cast<uint64_t>(i));
    const float u1 = (static_cast<float>(h >> 40) + 1.f) * (1.f / 16777216.f);  // (0, 1]
    const float u2 = static_cast<float>((h >> 16) & 0xffffff) * (1.f / 16777216.f);
    const float z = sqrtf(-2.f * logf(u1)) * cospif(2.f * u2);
    if constexpr (std::is_same_v<T, bf16>) {
      x[i] = __float2bfloat16(z * stddev);
    } else {
      x[i] = z * stddev;
    }
  }
}

template <typename T>
void fill_normal(T* x, int64_t n, uint64_t seed, float stddev) {
  const int64_t blocks = std::min<int64_t>((n + 255) / 256, 132 * 32);
  fill_normal_kernel<T><<<static_cast<unsigned>(blocks), 256>>>(x, n, seed, stddev);
  cuda_ok(cudaGetLastError(), "fill_normal");
}

// ---- timing

struct Stats {
  double median_ms = 0, min_ms = 0, max_ms = 0;
  int samples = 0;
  int calls_per_sample = 1;
};

Stats summarize(std::vector<float> ms, int calls) {
  std::sort(ms.begin(), ms.end());
  Stats s;
  s.samples = static_cast<int>(ms.size());
  s.calls_per_sample = calls;
  s.median_ms = ms[ms.size() / 2] / calls;
  s.min_ms = ms.front() / calls;
  s.max_ms = ms.back() / calls;
  return s;
}

// Events around each call; the calls are enqueued back to back (one sync at the end), so
// host-side launch cost hides behind millisecond kernels.
Stats time_eager(const std::function<void(cudaStream_t)>& call, cudaStream_t s, int warmup,
                 int iters) {
  for (int i = 0; i < warmup; ++i) call(s);
  std::vector<cudaEvent_t> ev(2 * iters);
  for (auto& e : ev) cuda_ok(cudaEventCreate(&e), "event create");
  for (int i = 0; i < iters; ++i) {
    cuda_ok(cudaEventRecord(ev[2 * i], s), "event record");
    call(s);
    cuda_ok(cudaEventRecord(ev[2 * i + 1], s), "event record");
  }
  cuda_ok(cudaStreamSynchronize(s), "timed calls");
  std::vector<float> ms(iters);
  for (int i = 0; i < iters; ++i)
    cuda_ok(cudaEventElapsedTime(&ms[i], ev[2 * i], ev[2 * i + 1]), "elapsed");
  for (auto& e : ev) cudaEventDestroy(e);
  return summarize(ms, 1);
}

// A CUDA graph of `calls` calls (call(s, j) for j < calls, j picking the rotating input set),
// replayed once per sample.
Stats time_graph(const std::function<void(cudaStream_t, int)>& call, int calls, cudaStream_t s,
                 int warmup, int iters) {
  for (int j = 0; j < calls; ++j) call(s, j);  // first launches outside the capture
  cuda_ok(cudaStreamSynchronize(s), "pre-capture calls");
  cudaGraph_t graph;
  cudaGraphExec_t exec;
  cuda_ok(cudaStreamBeginCapture(s, cudaStreamCaptureModeRelaxed), "begin capture");
  for (int j = 0; j < calls; ++j) call(s, j);
  cuda_ok(cudaStreamEndCapture(s, &graph), "end capture");
  cuda_ok(cudaGraphInstantiate(&exec, graph, 0), "graph instantiate");
  const Stats st =
      time_eager([&](cudaStream_t st) { cuda_ok(cudaGraphLaunch(exec, st), "graph launch"); }, s,
                 warmup, iters);
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  Stats out = st;
  out.median_ms /= calls;
  out.min_ms /= calls;
  out.max_ms /= calls;
  out.calls_per_sample = calls;
  return out;
}

// ---- one KDA layer's tensors for a varlen batch

struct Layer {
  int num_seqs = 0;
  int64_t num_tokens = 0, max_len = 0;
  int state_sets = 1;                  // rotating copies of the batch's states
  DeviceBuffer<bf16> q_raw, k_raw;     // [N, H, K] pre-norm (as the short conv leaves them)
  DeviceBuffer<bf16> q, k, v;          // q/k: the working (normalised in place) copies
  DeviceBuffer<bf16> f, b;             // [N, H*K] f_b_proj output, [N, H] b_proj output
  DeviceBuffer<float> a_log, dt_bias;  // [H], [H*K]
  DeviceBuffer<float> g, beta;         // [N, H*K], [N, H]
  DeviceBuffer<float> states;          // [state_sets * num_seqs, H, V, K]
  DeviceBuffer<int32_t> cu, blocks;    // [num_seqs + 1], [state_sets * num_seqs]
  DeviceBuffer<bf16> out;              // [N, H, V]

  Layer(const std::vector<int>& lens, int sets, uint64_t seed)
      : num_seqs(static_cast<int>(lens.size())),
        num_tokens(total(lens)),
        max_len(*std::max_element(lens.begin(), lens.end())),
        state_sets(sets),
        q_raw(n_qk()),
        k_raw(n_qk()),
        q(n_qk()),
        k(n_qk()),
        v(n_qk()),
        f(n_qk()),
        b(static_cast<size_t>(num_tokens * kH)),
        a_log(host_a_log(seed)),
        dt_bias(host_dt_bias(seed)),
        g(n_qk()),
        beta(static_cast<size_t>(num_tokens * kH)),
        states(static_cast<size_t>(sets * num_seqs * kH * kV * kK)),
        cu(cu_of(lens)),
        blocks(iota(sets * num_seqs)),
        out(n_qk()) {
    fill_normal(q_raw.get(), n_qk(), seed + 1, 1.f);
    fill_normal(k_raw.get(), n_qk(), seed + 2, 1.f);
    fill_normal(v.get(), n_qk(), seed + 3, 1.f);
    fill_normal(f.get(), n_qk(), seed + 4, 1.f);
    fill_normal(b.get(), num_tokens * kH, seed + 5, 1.f);
    fill_normal(states.get(), sets * num_seqs * kH * kV * kK, seed + 6, 0.1f);
    reset_qk();
    cuda_ok(cudaDeviceSynchronize(), "layer init");
  }
  size_t n_qk() const { return static_cast<size_t>(num_tokens * kH * kK); }
  void reset_qk() {
    cuda_ok(cudaMemcpy(q.get(), q_raw.get(), q.bytes(), cudaMemcpyDeviceToDevice), "copy q");
    cuda_ok(cudaMemcpy(k.get(), k_raw.get(), k.bytes(), cudaMemcpyDeviceToDevice), "copy k");
  }

  static int64_t total(const std::vector<int>& lens) {
    int64_t n = 0;
    for (int l : lens) n += l;
    return n;
  }
  static std::vector<int32_t> cu_of(const std::vector<int>& lens) {
    std::vector<int32_t> cu{0};
    for (int l : lens) cu.push_back(cu.back() + l);
    return cu;
  }
  static std::vector<int32_t> iota(int n) {
    std::vector<int32_t> v(n);
    for (int i = 0; i < n; ++i) v[i] = i;
    return v;
  }
  // The model's gate parameters: A_log = log(uniform(1, 16)) per head, dt_bias ~ N(0, 0.5).
  static std::vector<float> host_a_log(uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::uniform_real_distribution<float> u(1.f, 16.f);
    std::vector<float> a(kH);
    for (float& x : a) x = std::log(u(rng));
    return a;
  }
  static std::vector<float> host_dt_bias(uint64_t seed) {
    std::mt19937_64 rng(seed + 17);
    std::normal_distribution<float> n(0.f, 0.5f);
    std::vector<float> d(kH * kK);
    for (float& x : d) x = n(rng);
    return d;
  }

  KdaCudaParams<bf16> core_params(int set) const {
    KdaCudaParams<bf16> p;
    p.q = q.get();
    p.k = k.get();
    p.v = v.get();
    p.g = g.get();
    p.beta = beta.get();
    p.num_tokens = num_tokens;
    p.num_seqs = num_seqs;
    p.cu_seqlens = cu.get();
    p.state_blocks = blocks.get() + int64_t{set} * num_seqs;
    p.max_seqlen = max_len;
    p.num_heads = kH;
    p.head_k = kK;
    p.head_v = kV;
    p.scale = kScale;
    p.states = states.get();
    p.out = out.get();
    return p;
  }

  // The per-token scalars and the q/k norm, as engine/exec/cuda/cuda_forward.cpp runs them.
  void prologue(cudaStream_t s) {
    l2norm_rows_cuda<bf16>(q.get(), num_tokens * kH, kK, kL2Eps, 1.f, s);
    l2norm_rows_cuda<bf16>(k.get(), num_tokens * kH, kK, kL2Eps, 1.f, s);
    KdaGateCudaParams<bf16> gp;
    gp.f = f.get();
    gp.a_log = {a_log.get(), DType::kF32, 1, kH};
    gp.dt_bias = {dt_bias.get(), DType::kF32, 1, kH * kK};
    gp.num_tokens = num_tokens;
    gp.num_heads = kH;
    gp.head_dim = kK;
    gp.g = g.get();
    kda_gate_cuda<bf16>(gp, s);
    kda_beta_cuda<bf16>(b.get(), num_tokens * kH, beta.get(), s);
  }
};

// ---- reporting

struct Record {
  std::string kind, name, variant, includes;
  int num_seqs = 0;
  int64_t tokens = 0;
  Stats t;
  double state_bytes = 0;  // fp32 state read + written per call
  double min_bytes = 0;    // every input read once, every output written once
};

std::vector<Record> g_records;
double g_copy_tbps = 0;

void emit(const Record& r) {
  const double s = r.t.median_ms * 1e-3;
  std::printf(
      "{\"impl\":\"klserve\",\"kind\":\"%s\",\"case\":\"%s\",\"variant\":\"%s\",\"num_seqs\":%d,"
      "\"tokens\":%lld,\"median_ms\":%.6f,\"min_ms\":%.6f,\"max_ms\":%.6f,\"samples\":%d,"
      "\"calls_per_sample\":%d,\"tokens_per_s\":%.1f,\"state_bytes\":%.0f,\"state_tbps\":%.4f,"
      "\"min_bytes\":%.0f,\"min_bytes_tbps\":%.4f,\"copy_tbps\":%.4f,\"includes\":\"%s\"}\n",
      r.kind.c_str(), r.name.c_str(), r.variant.c_str(), r.num_seqs,
      static_cast<long long>(r.tokens), r.t.median_ms, r.t.min_ms, r.t.max_ms, r.t.samples,
      r.t.calls_per_sample, r.tokens / s, r.state_bytes, r.state_bytes / s * 1e-12, r.min_bytes,
      r.min_bytes / s * 1e-12, g_copy_tbps, r.includes.c_str());
  std::fflush(stdout);
  g_records.push_back(r);
}

const char* kCoreIncludes =
    "delta-rule kernel only; q/k pre-normalised bf16, g/beta precomputed fp32; fp32 state read "
    "and written in place";
const char* kUnitIncludes =
    "l2norm_rows(q) + l2norm_rows(k) + kda_gate (bf16 f -> fp32 g) + kda_beta (bf16 b -> fp32 "
    "beta) + delta-rule kernel; fp32 state read and written in place";

// Bytes the unit must move at the least: q, k, v, f, b in bf16, o out, the state in and out.
double unit_min_bytes(int64_t n, int seqs) {
  return double(n) * kH * (4 * kK * 2 + 2 + kV * 2) + 2 * seqs * kStateBytesPerSeq;
}

// ---- the cases

void measure_copy(cudaStream_t s) {
  const size_t bytes = size_t{1} << 30;
  DeviceBuffer<uint8_t> a(bytes), b(bytes);
  const Stats t = time_eager(
      [&](cudaStream_t st) {
        cuda_ok(cudaMemcpyAsync(b.get(), a.get(), bytes, cudaMemcpyDeviceToDevice, st), "copy");
      },
      s, 3, 20);
  g_copy_tbps = 2.0 * bytes / (t.median_ms * 1e-3) * 1e-12;
  std::printf(
      "{\"impl\":\"klserve\",\"kind\":\"ceiling\",\"case\":\"d2d_copy_1GiB\",\"median_ms\":%.6f,"
      "\"copy_tbps\":%.4f}\n",
      t.median_ms, g_copy_tbps);
}

void bench_prefill(const std::string& name, const std::vector<int>& lens, cudaStream_t s,
                   int warmup, int iters) {
  Layer L(lens, 1, 1000 + lens.size());
  L.prologue(s);  // q/k normalised, g and beta computed once for the core timing
  Record r{"prefill", name, "core", kCoreIncludes, L.num_seqs, L.num_tokens};
  r.state_bytes = 2 * L.num_seqs * kStateBytesPerSeq;
  r.min_bytes = double(L.num_tokens) * kH * (3 * kK * 2 + kK * 4 + 4 + kV * 2) + r.state_bytes;
  r.t = time_eager([&](cudaStream_t st) { kda_chunked_cuda<bf16>(L.core_params(0), st); }, s,
                   warmup, iters);
  emit(r);
  r.variant = "unit";
  r.includes = kUnitIncludes;
  r.min_bytes = unit_min_bytes(L.num_tokens, L.num_seqs);
  r.t = time_eager(
      [&](cudaStream_t st) {
        L.prologue(st);
        kda_chunked_cuda<bf16>(L.core_params(0), st);
      },
      s, warmup, iters);
  emit(r);
}

int rotation_sets(int batch) {
  int dev = 0, l2 = 0;
  cuda_ok(cudaGetDevice(&dev), "device");
  cuda_ok(cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, dev), "L2 size");
  const double set_bytes = batch * kStateBytesPerSeq;
  return std::max(1, static_cast<int>(std::ceil(4.0 * l2 / set_bytes)));
}

void bench_decode(int batch, cudaStream_t s, int warmup, int iters) {
  const int sets = rotation_sets(batch);
  const int calls = std::max(sets, 16);
  Layer L(std::vector<int>(batch, 1), sets, 2000 + batch);
  L.prologue(s);
  const std::string name = "decode_b" + std::to_string(batch);
  Record r{"decode", name, "core", kCoreIncludes, batch, batch};
  r.state_bytes = 2 * batch * kStateBytesPerSeq;
  r.min_bytes = double(batch) * kH * (3 * kK * 2 + kK * 4 + 4 + kV * 2) + r.state_bytes;
  r.t = time_graph(
      [&](cudaStream_t st, int j) { kda_recurrent_cuda<bf16>(L.core_params(j % sets), st); }, calls,
      s, warmup, iters);
  emit(r);
  r.variant = "unit";
  r.includes = kUnitIncludes;
  r.min_bytes = unit_min_bytes(batch, batch);
  r.t = time_graph(
      [&](cudaStream_t st, int j) {
        L.prologue(st);
        kda_recurrent_cuda<bf16>(L.core_params(j % sets), st);
      },
      calls, s, warmup, iters);
  emit(r);
}

// ---- --dump: inputs and our outputs of a small case, for the cross-check against fla

template <typename T>
void write_file(const std::string& path, const DeviceBuffer<T>& buf) {
  const std::vector<T> h = buf.to_host();
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(h.data()),
            static_cast<std::streamsize>(h.size() * sizeof(T)));
  if (!out) throw std::runtime_error("cannot write " + path);
}

// Files DIR/<prefix>_<tensor>.bin: q, k (pre-norm), v, f, b (bf16 as uint16), a_log, dt_bias,
// h0 (initial state [S, H, V, K]) f32, cu (int32 [S + 1]), then our o (bf16) and ht (f32).
void dump_case(const std::string& dir, const std::string& prefix, const std::vector<int>& lens,
               bool chunked, cudaStream_t s) {
  Layer L(lens, 1, 3000 + lens.size());
  const std::string p = dir + "/" + prefix + "_";
  write_file(p + "q.bin", L.q_raw);
  write_file(p + "k.bin", L.k_raw);
  write_file(p + "v.bin", L.v);
  write_file(p + "f.bin", L.f);
  write_file(p + "b.bin", L.b);
  write_file(p + "a_log.bin", L.a_log);
  write_file(p + "dt_bias.bin", L.dt_bias);
  write_file(p + "h0.bin", L.states);
  write_file(p + "cu.bin", L.cu);
  L.prologue(s);
  if (chunked) {
    kda_chunked_cuda<bf16>(L.core_params(0), s);
  } else {
    kda_recurrent_cuda<bf16>(L.core_params(0), s);
  }
  cuda_ok(cudaStreamSynchronize(s), "dump case");
  write_file(p + "o.bin", L.out);
  write_file(p + "ht.bin", L.states);
  std::printf(
      "{\"impl\":\"klserve\",\"kind\":\"dump\",\"case\":\"%s\",\"num_seqs\":%d,\"tokens\":%lld}\n",
      prefix.c_str(), L.num_seqs, static_cast<long long>(L.num_tokens));
}

void print_table() {
  std::printf("\nklserve KDA kernels (bf16, H=%lld, K=V=%lld; D2D copy ceiling %.2f TB/s)\n",
              static_cast<long long>(kH), static_cast<long long>(kK), g_copy_tbps);
  std::printf("%-22s %-5s %12s %14s %12s %10s\n", "case", "var", "median", "tokens/s", "state TB/s",
              "% of copy");
  for (const Record& r : g_records) {
    const double s = r.t.median_ms * 1e-3;
    const double tbps = r.state_bytes / s * 1e-12;
    char t[32];
    if (r.t.median_ms < 1) {
      std::snprintf(t, sizeof t, "%.2f us", r.t.median_ms * 1e3);
    } else {
      std::snprintf(t, sizeof t, "%.3f ms", r.t.median_ms);
    }
    if (r.kind == "decode") {  // state TB/s is the figure of merit of decode only (P4)
      std::printf("%-22s %-5s %12s %14.0f %12.3f %9.1f%%\n", r.name.c_str(), r.variant.c_str(), t,
                  r.tokens / s, tbps, g_copy_tbps > 0 ? 100 * tbps / g_copy_tbps : 0.0);
    } else {
      std::printf("%-22s %-5s %12s %14.0f %12s %10s\n", r.name.c_str(), r.variant.c_str(), t,
                  r.tokens / s, "-", "-");
    }
  }
}

int int_arg(const char* v, const char* name) {
  char* end = nullptr;
  const long x = std::strtol(v, &end, 10);
  if (!v[0] || *end || x <= 0) throw std::runtime_error(std::string("bad value for ") + name);
  return static_cast<int>(x);
}

}  // namespace

int main(int argc, char** argv) {
  try {
    int warmup = 5, iters = 30;
    std::string only, dump;
    for (int i = 1; i < argc; ++i) {
      const std::string a = argv[i];
      if (i + 1 >= argc) throw std::runtime_error("missing value after " + a);
      if (a == "--warmup") {
        warmup = int_arg(argv[++i], "--warmup");
      } else if (a == "--iters") {
        iters = int_arg(argv[++i], "--iters");
      } else if (a == "--only") {
        only = argv[++i];
      } else if (a == "--dump") {
        dump = argv[++i];
      } else {
        throw std::runtime_error("unknown argument " + a +
                                 " (use --warmup N --iters N --only prefill|decode --dump DIR)");
      }
    }
    cudaDeviceProp prop{};
    cuda_ok(cudaGetDeviceProperties(&prop, 0), "device properties");
    std::printf(
        "{\"impl\":\"klserve\",\"kind\":\"device\",\"name\":\"%s\",\"sms\":%d,\"l2_bytes\":%d}\n",
        prop.name, prop.multiProcessorCount, prop.l2CacheSize);
    cudaStream_t s;
    cuda_ok(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "stream");
    if (!dump.empty()) {
      dump_case(dump, "prefill", {100, 64, 257, 1}, true, s);
      dump_case(dump, "decode", std::vector<int>(4, 1), false, s);
    }
    measure_copy(s);
    if (only.empty() || only == "prefill") {
      bench_prefill("prefill_1x8192", {8192}, s, warmup, iters);
      bench_prefill("prefill_varlen_8x1024", std::vector<int>(8, 1024), s, warmup, iters);
    }
    if (only.empty() || only == "decode") {
      for (int batch : {1, 64, 256}) bench_decode(batch, s, warmup, iters);
    }
    cuda_ok(cudaGetLastError(), "bench");
    cuda_ok(cudaStreamDestroy(s), "stream destroy");
    print_table();
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "kl_kda_bench: %s\n", e.what());
    return 1;
  }
}
