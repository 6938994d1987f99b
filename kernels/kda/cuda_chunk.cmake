# CUDA kernels of the chunked KDA prefill (see kernels/CMakeLists.txt: kl_cuda_library).
kl_cuda_library(kl_cuda_kda_chunk
  kda/kda_chunked.cu
)
