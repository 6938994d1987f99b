# GPU tests of group moe (kl_gpu_test(name sources...); see tests/CMakeLists.txt).
