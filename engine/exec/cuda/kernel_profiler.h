// Where a GPU step's time goes, by kernel class, measured with CUDA events around each op when
// enabled (the profiling mode of the CUDA executor; Nsight is not always available). Off by
// default: then a scope costs one branch.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "kernels/cuda/cuda_fwd.h"

struct CUevent_st;

namespace kl {

enum class KernelClass : uint8_t { kKda, kMla, kMoe, kDenseGemm, kNorm, kSampling, kOther };
inline constexpr int kNumKernelClasses = 7;
const char* kernel_class_name(KernelClass c);

class KernelProfiler {
 public:
  KernelProfiler() = default;
  ~KernelProfiler();
  KernelProfiler(const KernelProfiler&) = delete;
  KernelProfiler& operator=(const KernelProfiler&) = delete;

  void set_enabled(bool on) { enabled_ = on; }
  bool enabled() const { return enabled_; }

  // Records events on `stream` around what is enqueued during its lifetime.
  class Scope {
   public:
    Scope(KernelProfiler& p, KernelClass c, CudaStream stream);
    ~Scope();
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;

   private:
    KernelProfiler* p_ = nullptr;
    CudaStream stream_ = nullptr;
    size_t index_ = 0;
  };
  Scope scope(KernelClass c, CudaStream stream) { return Scope(*this, c, stream); }

  // After the stream's work is complete: adds this step's intervals to the totals.
  void collect();
  void end_step() { ++steps_; }
  void reset();

  double total_ms(KernelClass c) const { return totals_[static_cast<int>(c)]; }
  int64_t steps() const { return steps_; }
  // "KDA 41.2% (1.234 ms/step), ..." over the steps since reset().
  std::string report() const;

 private:
  CUevent_st* event();

  bool enabled_ = false;
  std::vector<CUevent_st*> pool_;
  size_t used_ = 0;
  struct Interval {
    KernelClass c;
    CUevent_st* start;
    CUevent_st* end;
  };
  std::vector<Interval> open_;
  std::array<double, kNumKernelClasses> totals_{};
  int64_t steps_ = 0;
};

}  // namespace kl
