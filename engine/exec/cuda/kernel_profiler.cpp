// CUDA-event intervals per kernel class (see kernel_profiler.h).
#include "engine/exec/cuda/kernel_profiler.h"

#include <cuda_runtime.h>

#include <fmt/format.h>

#include "engine/core/error.h"

namespace kl {

const char* kernel_class_name(KernelClass c) {
  switch (c) {
    case KernelClass::kKda:
      return "KDA";
    case KernelClass::kMla:
      return "MLA";
    case KernelClass::kMoe:
      return "MoE experts";
    case KernelClass::kDenseGemm:
      return "dense GEMMs";
    case KernelClass::kNorm:
      return "norms";
    case KernelClass::kSampling:
      return "sampling";
    case KernelClass::kOther:
      return "other";
  }
  return "?";
}

KernelProfiler::~KernelProfiler() {
  for (CUevent_st* e : pool_) cudaEventDestroy(e);
}

CUevent_st* KernelProfiler::event() {
  if (used_ == pool_.size()) {
    cudaEvent_t e = nullptr;
    KL_CHECK(cudaEventCreate(&e) == cudaSuccess, "cudaEventCreate failed");
    pool_.push_back(e);
  }
  return pool_[used_++];
}

KernelProfiler::Scope::Scope(KernelProfiler& p, KernelClass c, CudaStream stream) {
  if (!p.enabled_) return;
  p_ = &p;
  stream_ = stream;
  CUevent_st* start = p.event();
  cudaEventRecord(start, stream);
  index_ = p.open_.size();
  p.open_.push_back({c, start, nullptr});
}

KernelProfiler::Scope::~Scope() {
  if (!p_) return;
  CUevent_st* end = p_->event();
  cudaEventRecord(end, stream_);
  p_->open_[index_].end = end;
}

void KernelProfiler::collect() {
  for (const Interval& i : open_) {
    float ms = 0.f;
    if (i.end && cudaEventElapsedTime(&ms, i.start, i.end) == cudaSuccess)
      totals_[static_cast<int>(i.c)] += ms;
  }
  open_.clear();
  used_ = 0;
}

void KernelProfiler::reset() {
  totals_.fill(0.0);
  steps_ = 0;
}

std::string KernelProfiler::report() const {
  double sum = 0;
  for (double t : totals_) sum += t;
  std::string out;
  for (int c = 0; c < kNumKernelClasses; ++c) {
    if (!out.empty()) out += ", ";
    out += fmt::format(
        "{} {:.1f}% ({:.3f} ms/step)", kernel_class_name(static_cast<KernelClass>(c)),
        sum > 0 ? 100.0 * totals_[c] / sum : 0.0, steps_ > 0 ? totals_[c] / steps_ : 0.0);
  }
  return out;
}

}  // namespace kl
