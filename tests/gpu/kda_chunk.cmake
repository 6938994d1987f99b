# GPU tests of group kda_chunk (kl_gpu_test(name sources...); see tests/CMakeLists.txt).
kl_gpu_test(kl_gpu_kda_chunk_tests
  gpu/kda_chunk_gpu_test.cpp
)
target_link_libraries(kl_gpu_kda_chunk_tests PRIVATE kl_cuda_kda_chunk)
