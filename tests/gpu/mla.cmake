# GPU tests of group mla (kl_gpu_test(name sources...); see tests/CMakeLists.txt).
kl_gpu_test(kl_gpu_mla_tests
  gpu/mla_gpu_test.cpp
  gpu/mla_dims_gpu_test.cpp
  gpu/mla_test_util.cpp
  gpu/mla_cache_write_gpu_test.cpp
  gpu/mla_perf_gpu_test.cpp
)
target_link_libraries(kl_gpu_mla_tests PRIVATE kl_cuda_mla)
