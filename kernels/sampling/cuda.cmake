# CUDA kernels of kernels/sampling (see kernels/CMakeLists.txt: kl_cuda_library).
kl_cuda_library(kl_cuda_sampling
  sampling/sampling.cu
  sampling/sampling_logprobs.cu
)
