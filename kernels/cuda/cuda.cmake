# kl_cuda_base: device inventory, norms, GEMMs (cuBLASLt), embedding, activations, copies.
kl_cuda_library(kl_cuda_base
  cuda/device_info.cu
  cuda/copy.cu
  norm/rmsnorm.cu
  gemm/gemm.cu
  embedding/embedding.cu
  activation/silu_mul.cu
)
target_link_libraries(kl_cuda_base PUBLIC CUDA::cublasLt)
