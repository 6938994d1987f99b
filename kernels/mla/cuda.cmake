# CUDA kernels of kernels/mla (see kernels/CMakeLists.txt: kl_cuda_library).
kl_cuda_library(kl_cuda_mla
  mla/mla_runner.cu
  mla/mla_decode.cu
  mla/mla_prefill.cu
)
# kl_cuda_base for GemmRunner (absorb / un-absorb / kv_b up-projection GEMMs).
target_link_libraries(kl_cuda_mla PUBLIC kl_cuda_base)
