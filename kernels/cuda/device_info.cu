// Host-side GPU inventory and the Hopper check, through the CUDA runtime API. Every runtime error
// becomes a value (an empty list or a message); nothing here throws across the boundary.
#include "kernels/cuda/device_info.h"

#include <cuda_runtime.h>

namespace kl::kernels {
namespace {

std::string runtime_message(cudaError_t err) {
  return std::string(cudaGetErrorName(err)) + ": " + cudaGetErrorString(err);
}

// Fills `out` for device `index`; returns "" or the runtime's message.
std::string query(int index, GpuInfo& out) {
  cudaDeviceProp prop{};
  const cudaError_t err = cudaGetDeviceProperties(&prop, index);
  if (err != cudaSuccess) {
    cudaGetLastError();  // clear the (non-sticky) error so later calls start clean
    return "cannot query CUDA device " + std::to_string(index) + " (" + runtime_message(err) + ")";
  }
  out.index = index;
  out.major = prop.major;
  out.minor = prop.minor;
  out.name = prop.name;
  out.total_memory_bytes = static_cast<int64_t>(prop.totalGlobalMem);
  return "";
}

}  // namespace

GpuInventory list_gpus() noexcept {
  GpuInventory inv;
  try {
    int count = 0;
    const cudaError_t err = cudaGetDeviceCount(&count);
    if (err != cudaSuccess) {
      // cudaErrorNoDevice / cudaErrorInsufficientDriver and friends: a machine without a usable
      // GPU is an answer, not a failure.
      cudaGetLastError();
      inv.note = runtime_message(err);
      return inv;
    }
    for (int i = 0; i < count; ++i) {
      GpuInfo g;
      const std::string msg = query(i, g);
      if (!msg.empty()) {
        inv.note = msg;
        continue;
      }
      inv.gpus.push_back(std::move(g));
    }
    if (inv.gpus.empty() && inv.note.empty()) inv.note = "no CUDA device visible";
  } catch (...) {  // std::bad_alloc from the strings: still an answer
    inv.gpus.clear();
    inv.note = "out of memory while listing GPUs";
  }
  return inv;
}

std::string hopper_check(const GpuInfo& gpu) {
  if (gpu.major == 9 && gpu.minor == 0) return "";
  return "GPU " + std::to_string(gpu.index) + " (" + gpu.name + ") has compute capability " +
         std::to_string(gpu.major) + "." + std::to_string(gpu.minor) +
         "; klserve's CUDA kernels are built for Hopper (sm_90a, compute capability 9.0: "
         "H100/H200) only";
}

std::string hopper_check(int device) noexcept {
  try {
    GpuInfo g;
    const std::string msg = query(device, g);
    return msg.empty() ? hopper_check(g) : msg;
  } catch (...) {
    return "out of memory while checking a GPU";
  }
}

}  // namespace kl::kernels
