# GPU tests of the CUDA executor: golden cases end to end (fp32 and bf16 rules), executor
# behaviour (memory plan, fatal errors).
if(TARGET kl_engine_cuda)
  kl_gpu_test(kl_gpu_engine_tests
    golden/golden_case.cpp
    golden/golden_runner.cpp
    gpu/golden_gpu_test.cpp
    gpu/cuda_executor_gpu_test.cpp
    gpu/dummy_weights_gpu_test.cpp
    gpu/cuda_graph_gpu_test.cpp
    gpu/golden_bf16_probe_gpu_test.cpp
  )
  target_link_libraries(kl_gpu_engine_tests PRIVATE kl_engine_cuda)
endif()
