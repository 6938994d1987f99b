# GPU tests of group engine (kl_gpu_test(name sources...); see tests/CMakeLists.txt).
