# CUDA kernels of kernels/moe (see kernels/CMakeLists.txt: kl_cuda_library).
