// Deliberate device faults, for testing that the server treats any CUDA error as fatal (the
// CUDA executor's fault-injection option). Never used in normal operation.
#pragma once

#include "kernels/cuda/cuda_fwd.h"

namespace kl::kernels {

// Enqueues a kernel that traps: the context gets a sticky error that the next synchronising
// call reports, as a real illegal memory access would.
void inject_device_fault(CudaStream stream);

}  // namespace kl::kernels
