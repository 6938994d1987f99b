# CUDA kernels of kernels/mla (see kernels/CMakeLists.txt: kl_cuda_library).
