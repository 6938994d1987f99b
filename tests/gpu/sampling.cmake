# GPU tests of group sampling (kl_gpu_test(name sources...); see tests/CMakeLists.txt).
