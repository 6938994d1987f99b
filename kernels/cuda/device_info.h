// Host-side inventory of the visible CUDA GPUs and the Hopper-only startup check (DESIGN toolchain
// notes: build for sm_90a, refuse other GPUs with a message naming the found capability).
// No CUDA header here, so engine/server code can include it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace kl::kernels {

struct GpuInfo {
  int index = 0;
  int major = 0;  // compute capability major.minor
  int minor = 0;
  std::string name;
  int64_t total_memory_bytes = 0;
};

struct GpuInventory {
  std::vector<GpuInfo> gpus;  // empty when there is no GPU, no driver or no usable runtime
  std::string note;           // why the list is empty (the CUDA runtime's message), else ""
};

// Never throws and never aborts: "no GPU" and "no driver" are ordinary answers (0 GPUs).
GpuInventory list_gpus() noexcept;

// "" when the GPU is a Hopper part (compute capability 9.0, what sm_90a code runs on); otherwise
// a message naming the GPU and the capability it found.
std::string hopper_check(const GpuInfo& gpu);

// The same check by device index, querying the runtime; a failed query is reported as a message.
std::string hopper_check(int device) noexcept;

}  // namespace kl::kernels
