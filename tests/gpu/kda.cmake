# GPU tests of group kda (kl_gpu_test(name sources...); see tests/CMakeLists.txt).
