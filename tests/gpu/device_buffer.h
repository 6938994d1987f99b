// A tiny RAII device buffer for the GPU tests (cudaMalloc/cudaFree, host copies, checked calls).
#pragma once

#include <cstddef>
#include <stdexcept>
#include <string>
#include <vector>

#include <cuda_runtime.h>

namespace kl::test {

inline void cuda_ok(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(e));
}

template <typename T>
class DeviceBuffer {
 public:
  explicit DeviceBuffer(const std::vector<T>& host) : n_(host.size()) {
    cuda_ok(cudaMalloc(&ptr_, bytes()), "cudaMalloc");
    cuda_ok(cudaMemcpy(ptr_, host.data(), bytes(), cudaMemcpyHostToDevice), "cudaMemcpy H2D");
  }
  explicit DeviceBuffer(size_t n) : n_(n) {
    cuda_ok(cudaMalloc(&ptr_, bytes()), "cudaMalloc");
    cuda_ok(cudaMemset(ptr_, 0, bytes()), "cudaMemset");
  }
  ~DeviceBuffer() { cudaFree(ptr_); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  T* get() const { return static_cast<T*>(ptr_); }
  size_t bytes() const { return n_ * sizeof(T); }
  std::vector<T> to_host() const {
    std::vector<T> h(n_);
    cuda_ok(cudaDeviceSynchronize(), "kernel");
    cuda_ok(cudaMemcpy(h.data(), ptr_, bytes(), cudaMemcpyDeviceToHost), "cudaMemcpy D2H");
    return h;
  }

 private:
  void* ptr_ = nullptr;
  size_t n_ = 0;
};

}  // namespace kl::test
