# GPU tests of group kda_chunk (kl_gpu_test(name sources...); see tests/CMakeLists.txt).
