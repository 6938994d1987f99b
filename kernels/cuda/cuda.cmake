# kl_cuda_base: device inventory, norms, GEMMs (cuBLASLt), embedding, activations, copies.
kl_cuda_library(kl_cuda_base
  cuda/device_info.cu
  norm/rmsnorm.cu
)
