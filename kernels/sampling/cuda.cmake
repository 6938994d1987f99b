# CUDA kernels of kernels/sampling (see kernels/CMakeLists.txt: kl_cuda_library).
