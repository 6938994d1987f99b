# GPU tests of group moe (kl_gpu_test(name sources...); see tests/CMakeLists.txt).
kl_gpu_test(kl_gpu_moe_tests gpu/moe_gpu_test.cpp)
target_link_libraries(kl_gpu_moe_tests PRIVATE kl_cuda_moe)
