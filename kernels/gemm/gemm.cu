// GemmRunner: row-major GEMMs (Linear layers and strided-batched per-head products) on cuBLASLt.
// cuBLAS is column-major, so a row-major C[m, n] = A[m, k] B(k, n) is computed as the
// column-major C^T[n, m] = B(k, n)^T A^T: the row-major buffers are passed unchanged, with the
// operands swapped. Descriptors and the heuristic's algorithm are cached per shape.
#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <array>
#include <map>
#include <type_traits>

#include "engine/core/error.h"
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/gemm/gemm_cuda.h"

namespace kl::kernels {
namespace {

// Workspace for split-K and the larger tiles; allocated once, shared by every call of a runner
// (calls are serialised on the runner's streams by the one-runner-per-thread rule).
constexpr size_t kWorkspaceBytes = 32u << 20;

#define KL_CUBLAS_CHECK(call)                                         \
  do {                                                                \
    const cublasStatus_t kl_st_ = (call);                             \
    KL_CHECK(kl_st_ == CUBLAS_STATUS_SUCCESS, "{} failed: {}", #call, \
             cublasLtGetStatusString(kl_st_));                        \
  } while (0)

// Largest power of two (up to 256) dividing the address: cuBLASLt's heuristic assumes 256-byte
// aligned operands unless told otherwise, and offset views (a row range, head h of a batch) are
// not.
uint32_t pointer_alignment(const void* p) {
  const auto addr = reinterpret_cast<uintptr_t>(p);
  uint32_t a = 256;
  while (a > 1 && (addr % a) != 0) a /= 2;
  return a;
}

template <typename T>
constexpr cudaDataType_t cuda_type() {
  if constexpr (std::is_same_v<T, float>) {
    return CUDA_R_32F;
  } else {
    return CUDA_R_16BF;
  }
}

template <typename T>
constexpr DType kl_dtype() {
  return std::is_same_v<T, float> ? DType::kF32 : DType::kBF16;
}

// Everything a plan depends on: types, transposition, shape, strides, batch, operand alignments.
using PlanKey = std::array<int64_t, 16>;

// One row-major GEMM problem, after the parameter checks.
struct Problem {
  cudaDataType_t type;
  int64_t m, n, k, batch;
  const void* a;  // [m, k] row-major, stride lda
  int64_t lda, a_batch_stride;
  const void* b;  // [n, k] (b_transposed) or [k, n], stride ldb
  int64_t ldb, b_batch_stride;
  bool b_transposed;
  void* c;  // [m, n] row-major, stride ldc
  int64_t ldc, c_batch_stride;
  bool accumulate;
};

}  // namespace

struct GemmRunner::Impl {
  struct Plan {
    cublasLtMatmulDesc_t desc = nullptr;
    cublasLtMatrixLayout_t lt_a = nullptr;  // cuBLAS's A: our B
    cublasLtMatrixLayout_t lt_b = nullptr;  // cuBLAS's B: our A
    cublasLtMatrixLayout_t lt_c = nullptr;
    cublasLtMatmulAlgo_t algo{};
  };

  cublasLtHandle_t handle = nullptr;
  void* workspace = nullptr;
  std::map<PlanKey, Plan> plans;

  Impl() {
    KL_CUBLAS_CHECK(cublasLtCreate(&handle));
    const cudaError_t err = cudaMalloc(&workspace, kWorkspaceBytes);
    if (err != cudaSuccess) {
      cublasLtDestroy(handle);
      KL_CHECK(false, "GemmRunner: cudaMalloc of the {} MiB cuBLASLt workspace failed: {}",
               kWorkspaceBytes >> 20, cudaGetErrorString(err));
    }
  }

  ~Impl() {
    for (auto& [key, plan] : plans) destroy(plan);
    cudaFree(workspace);
    cublasLtDestroy(handle);
  }

  static void destroy(Plan& plan) {
    if (plan.lt_c) cublasLtMatrixLayoutDestroy(plan.lt_c);
    if (plan.lt_b) cublasLtMatrixLayoutDestroy(plan.lt_b);
    if (plan.lt_a) cublasLtMatrixLayoutDestroy(plan.lt_a);
    if (plan.desc) cublasLtMatmulDescDestroy(plan.desc);
  }

  static cublasLtMatrixLayout_t make_layout(cudaDataType_t type, int64_t rows, int64_t cols,
                                            int64_t ld, int64_t batch, int64_t batch_stride) {
    cublasLtMatrixLayout_t layout = nullptr;
    KL_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&layout, type, static_cast<uint64_t>(rows),
                                               static_cast<uint64_t>(cols), ld));
    if (batch > 1) {
      const int32_t count = static_cast<int32_t>(batch);
      KL_CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(layout, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT,
                                                       &count, sizeof(count)));
      KL_CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(layout,
                                                       CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET,
                                                       &batch_stride, sizeof(batch_stride)));
    }
    return layout;
  }

  Plan build(const Problem& p, const std::array<uint32_t, 3>& align) {
    Plan plan;
    try {
      // fp32 compute for both dtypes (never CUBLAS_COMPUTE_32F_FAST_TF32), fp32 alpha/beta.
      KL_CUBLAS_CHECK(cublasLtMatmulDescCreate(&plan.desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
      // Column-major view: C^T[n, m] = op(B_stored) [n, k] x A_stored [k, m].
      // A row-major [n, k] weight is a column-major [k, n] matrix: it needs op T; a row-major
      // [k, n] matrix is a column-major [n, k] one: op N.
      const cublasOperation_t trans_a = p.b_transposed ? CUBLAS_OP_T : CUBLAS_OP_N;
      const cublasOperation_t trans_b = CUBLAS_OP_N;
      KL_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_TRANSA,
                                                     &trans_a, sizeof(trans_a)));
      KL_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_TRANSB,
                                                     &trans_b, sizeof(trans_b)));
      plan.lt_a = p.b_transposed ? make_layout(p.type, p.k, p.n, p.ldb, p.batch, p.b_batch_stride)
                                 : make_layout(p.type, p.n, p.k, p.ldb, p.batch, p.b_batch_stride);
      plan.lt_b = make_layout(p.type, p.k, p.m, p.lda, p.batch, p.a_batch_stride);
      plan.lt_c = make_layout(p.type, p.n, p.m, p.ldc, p.batch, p.c_batch_stride);

      cublasLtMatmulPreference_t pref = nullptr;
      KL_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
      const uint64_t ws = kWorkspaceBytes;
      const uint32_t align_a = align[1], align_b = align[0], align_c = align[2];
      cublasStatus_t st = cublasLtMatmulPreferenceSetAttribute(
          pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws));
      if (st == CUBLAS_STATUS_SUCCESS)
        st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES,
                                                  &align_a, sizeof(align_a));
      if (st == CUBLAS_STATUS_SUCCESS)
        st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
                                                  &align_b, sizeof(align_b));
      if (st == CUBLAS_STATUS_SUCCESS)
        st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES,
                                                  &align_c, sizeof(align_c));
      if (st == CUBLAS_STATUS_SUCCESS)
        st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES,
                                                  &align_c, sizeof(align_c));
      // Split-K partial sums only in fp32: the in-place and output-type schemes add the partials
      // in bf16 (a rounding per split: a bf16 result would no longer be bf16(fp32 sum)).
      const uint32_t reduction_mask = CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE;
      if (st == CUBLAS_STATUS_SUCCESS)
        st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK,
                                                  &reduction_mask, sizeof(reduction_mask));
      cublasLtMatmulHeuristicResult_t result{};
      int returned = 0;
      if (st == CUBLAS_STATUS_SUCCESS)
        st = cublasLtMatmulAlgoGetHeuristic(handle, plan.desc, plan.lt_a, plan.lt_b, plan.lt_c,
                                            plan.lt_c, pref, 1, &result, &returned);
      cublasLtMatmulPreferenceDestroy(pref);
      KL_CHECK(st == CUBLAS_STATUS_SUCCESS && returned > 0,
               "GemmRunner: no cuBLASLt algorithm for m={} n={} k={} batch={} lda={} ldb={} "
               "ldc={} b_transposed={} ({})",
               p.m, p.n, p.k, p.batch, p.lda, p.ldb, p.ldc, p.b_transposed,
               cublasLtGetStatusString(st));
      plan.algo = result.algo;
    } catch (...) {
      destroy(plan);
      throw;
    }
    return plan;
  }

  void run(const Problem& p, cudaStream_t stream) {
    // Our A is cuBLAS's B and vice versa; the alignments are listed as (our A, our B, C).
    const std::array<uint32_t, 3> align = {pointer_alignment(p.a), pointer_alignment(p.b),
                                           pointer_alignment(p.c)};
    const PlanKey key = {int64_t(p.type),
                         p.m,
                         p.n,
                         p.k,
                         p.batch,
                         p.lda,
                         p.ldb,
                         p.ldc,
                         p.a_batch_stride,
                         p.b_batch_stride,
                         p.c_batch_stride,
                         int64_t(p.b_transposed),
                         align[0],
                         align[1],
                         align[2],
                         0};
    auto it = plans.find(key);
    if (it == plans.end()) it = plans.emplace(key, build(p, align)).first;
    const Plan& plan = it->second;
    const float alpha = 1.f;
    const float beta = p.accumulate ? 1.f : 0.f;
    KL_CUBLAS_CHECK(cublasLtMatmul(handle, plan.desc, &alpha, p.b, plan.lt_a, p.a, plan.lt_b, &beta,
                                   p.c, plan.lt_c, p.c, plan.lt_c, &plan.algo, workspace,
                                   kWorkspaceBytes, stream));
  }
};

GemmRunner::GemmRunner() : impl_(std::make_unique<Impl>()) {}
GemmRunner::~GemmRunner() = default;

template <typename T>
void GemmRunner::linear(const LinearCudaParams<T>& p, CudaStream stream) {
  const WeightView& w = p.w;
  KL_CHECK(w.dtype == kl_dtype<T>(),
           "GemmRunner::linear: weight dtype {} differs from the activation dtype {} (convert "
           "weights at load)",
           dtype_name(w.dtype), dtype_name(kl_dtype<T>()));
  const int64_t n = w.rows;
  const int64_t k = w.cols;
  const int64_t x_stride = p.x_stride ? p.x_stride : k;
  const int64_t out_stride = p.out_stride ? p.out_stride : n;
  KL_CHECK(p.m >= 0 && n > 0 && k > 0, "GemmRunner::linear: bad shape m={} n={} k={}", p.m, n, k);
  KL_CHECK(x_stride >= k && out_stride >= n,
           "GemmRunner::linear: strides x={} out={} below k={} n={}", x_stride, out_stride, k, n);
  if (p.m == 0) return;
  KL_CHECK(p.x && p.out && w.data, "GemmRunner::linear: null device pointer");
  Problem prob;
  prob.type = cuda_type<T>();
  prob.m = p.m;
  prob.n = n;
  prob.k = k;
  prob.batch = 1;
  prob.a = p.x;
  prob.lda = x_stride;
  prob.a_batch_stride = 0;
  prob.b = w.data;
  prob.ldb = k;
  prob.b_batch_stride = 0;
  prob.b_transposed = true;
  prob.c = p.out;
  prob.ldc = out_stride;
  prob.c_batch_stride = 0;
  prob.accumulate = p.accumulate;
  impl_->run(prob, stream);
}

template <typename T>
void GemmRunner::batched(const BatchedGemmCudaParams<T>& p, CudaStream stream) {
  KL_CHECK(p.m >= 0 && p.n > 0 && p.k > 0 && p.batch >= 1 && p.batch <= 0x7fffffff,
           "GemmRunner::batched: bad shape m={} n={} k={} batch={}", p.m, p.n, p.k, p.batch);
  const int64_t b_row = p.b_transposed ? p.k : p.n;  // row length of the stored B
  KL_CHECK(p.lda >= p.k && p.ldb >= b_row && p.ldc >= p.n,
           "GemmRunner::batched: leading strides lda={} ldb={} ldc={} below k={} {}={} n={}", p.lda,
           p.ldb, p.ldc, p.k, p.b_transposed ? "k" : "n", b_row, p.n);
  // Batches may interleave (head h of [T, H, d] starts d after head h-1, ldc = H * d), so only
  // the necessary condition is checked: matrices of consecutive batches must not share a row.
  KL_CHECK(
      p.batch == 1 || (p.a_batch_stride >= 0 && p.b_batch_stride >= 0 && p.c_batch_stride >= p.n),
      "GemmRunner::batched: batch strides a={} b={} c={} (c's must be at least n={})",
      p.a_batch_stride, p.b_batch_stride, p.c_batch_stride, p.n);
  if (p.m == 0) return;
  KL_CHECK(p.a && p.b && p.c, "GemmRunner::batched: null device pointer");
  Problem prob;
  prob.type = cuda_type<T>();
  prob.m = p.m;
  prob.n = p.n;
  prob.k = p.k;
  prob.batch = p.batch;
  prob.a = p.a;
  prob.lda = p.lda;
  prob.a_batch_stride = p.a_batch_stride;
  prob.b = p.b;
  prob.ldb = p.ldb;
  prob.b_batch_stride = p.b_batch_stride;
  prob.b_transposed = p.b_transposed;
  prob.c = p.c;
  prob.ldc = p.ldc;
  prob.c_batch_stride = p.c_batch_stride;
  prob.accumulate = p.accumulate;
  impl_->run(prob, stream);
}

template void GemmRunner::linear<float>(const LinearCudaParams<float>&, CudaStream);
template void GemmRunner::linear<__nv_bfloat16>(const LinearCudaParams<__nv_bfloat16>&, CudaStream);
template void GemmRunner::batched<float>(const BatchedGemmCudaParams<float>&, CudaStream);
template void GemmRunner::batched<__nv_bfloat16>(const BatchedGemmCudaParams<__nv_bfloat16>&,
                                                 CudaStream);

}  // namespace kl::kernels
