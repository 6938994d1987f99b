# CUDA kernels of kernels/kda (see kernels/CMakeLists.txt: kl_cuda_library).
