# CUDA kernels of kernels/kda (see kernels/CMakeLists.txt: kl_cuda_library): the decode-side KDA
# ops (short conv with its carried window, gate / beta / L2 norm, recurrent delta rule).
kl_cuda_library(kl_cuda_kda
  conv/short_conv.cu
  kda/kda_gate.cu
  kda/kda_recurrent.cu
)
