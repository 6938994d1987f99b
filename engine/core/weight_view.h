// A non-owning view of a 2-D weight matrix in its stored dtype ([rows, cols], row-major, PyTorch's
// [out, in] convention for Linear weights). Kernels read weights through it without conversion.
#pragma once

#include <cstdint>

#include "engine/core/dtype.h"

namespace kl {

struct WeightView {
  const void* data = nullptr;
  DType dtype = DType::kF32;
  int64_t rows = 0;  // out features
  int64_t cols = 0;  // in features

  float at(int64_t r, int64_t c) const { return load_as_f32(data, dtype, r * cols + c); }
  float at(int64_t i) const { return load_as_f32(data, dtype, i); }
  int64_t numel() const { return rows * cols; }
};

}  // namespace kl
