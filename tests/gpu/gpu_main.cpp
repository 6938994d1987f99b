// Entry point of the GPU tests: without a usable GPU every test reports "skipped" (exit code
// KL_SKIP_CODE, ctest SKIP_RETURN_CODE), never "passed"; on a non-Hopper GPU they fail loudly,
// since the kernels are built for sm_90a only.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <cstdio>
#include <string_view>

#include "kernels/cuda/device_info.h"

int main(int argc, char** argv) {
  bool listing = false;
  for (int i = 1; i < argc; ++i) listing |= std::string_view(argv[i]).rfind("--list", 0) == 0;
  if (!listing) {
    const kl::kernels::GpuInventory inv = kl::kernels::list_gpus();
    if (inv.gpus.empty()) {
      std::fprintf(stderr, "no usable GPU (%s): skipping the GPU tests\n", inv.note.c_str());
      return KL_SKIP_CODE;
    }
    const std::string why = kl::kernels::hopper_check(inv.gpus[0]);
    if (!why.empty()) {
      std::fprintf(stderr, "%s\n", why.c_str());
      return 1;
    }
    std::fprintf(stderr, "GPU 0: %s (sm_%d%d)\n", inv.gpus[0].name.c_str(), inv.gpus[0].major,
                 inv.gpus[0].minor);
  }
  return Catch::Session().run(argc, argv);
}
