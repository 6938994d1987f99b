# GPU tests of group kda (kl_gpu_test(name sources...); see tests/CMakeLists.txt): the decode-side
# KDA kernels (short conv, gate / beta / L2 norm, recurrent delta rule) against their CPU twins.
kl_gpu_test(kl_gpu_kda_tests
  gpu/short_conv_gpu_test.cpp
  gpu/kda_gate_gpu_test.cpp
  gpu/kda_gpu_test.cpp
  gpu/kda_bench_gpu_test.cpp
)
target_link_libraries(kl_gpu_kda_tests PRIVATE kl_cuda_kda)
