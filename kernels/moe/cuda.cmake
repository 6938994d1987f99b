# CUDA kernels of kernels/moe (see kernels/CMakeLists.txt: kl_cuda_library).
kl_cuda_library(kl_cuda_moe
  moe/moe_routing.cu
  moe/moe_grouped_gemm.cu
  moe/moe_runner.cu
)
target_link_libraries(kl_cuda_moe PUBLIC kl_cuda_base)
