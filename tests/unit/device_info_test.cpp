// The GPU inventory and the Hopper-only startup check, without needing a GPU: the check's verdict
// and message for the capabilities klserve may meet, and list_gpus() answering (never throwing)
// on a machine without a GPU or driver.
#include <catch2/catch.hpp>

#include "kernels/cuda/device_info.h"

using namespace kl::kernels;

TEST_CASE("hopper check accepts compute capability 9.0 and names any other") {
  CHECK(hopper_check(GpuInfo{0, 9, 0, "NVIDIA H200", 0}).empty());
  const std::string a100 = hopper_check(GpuInfo{1, 8, 0, "NVIDIA A100-SXM4-80GB", 0});
  CHECK_THAT(a100, Catch::Contains("GPU 1") && Catch::Contains("NVIDIA A100-SXM4-80GB") &&
                       Catch::Contains("compute capability 8.0") && Catch::Contains("sm_90a"));
  CHECK_THAT(hopper_check(GpuInfo{0, 10, 0, "NVIDIA B200", 0}),
             Catch::Contains("compute capability 10.0"));
  CHECK_THAT(hopper_check(GpuInfo{0, 8, 9, "NVIDIA L40S", 0}),
             Catch::Contains("compute capability 8.9"));
}

TEST_CASE("list_gpus answers without throwing, with a reason when it finds none") {
  const GpuInventory inv = list_gpus();
  if (inv.gpus.empty()) {
    CHECK_FALSE(inv.note.empty());
  } else {
    for (const GpuInfo& g : inv.gpus) CHECK(g.major > 0);
  }
}
