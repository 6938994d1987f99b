// A kernel that traps (see fault_injection.h).
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/fault_injection.h"

namespace kl::kernels {
namespace {

__global__ void trap_kernel() {
  __trap();
}

}  // namespace

void inject_device_fault(CudaStream stream) {
  trap_kernel<<<1, 1, 0, stream>>>();
}

}  // namespace kl::kernels
