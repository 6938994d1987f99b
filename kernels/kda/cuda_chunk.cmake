# CUDA kernels of the chunked KDA prefill (see kernels/CMakeLists.txt: kl_cuda_library).
