# GPU tests of group sampling (kl_gpu_test(name sources...); see tests/CMakeLists.txt).
kl_gpu_test(kl_gpu_sampling_tests
  gpu/sampling_gpu_test.cpp
)
target_link_libraries(kl_gpu_sampling_tests PRIVATE kl_cuda_sampling)
