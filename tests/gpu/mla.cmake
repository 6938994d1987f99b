# GPU tests of group mla (kl_gpu_test(name sources...); see tests/CMakeLists.txt).
