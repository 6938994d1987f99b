// Entry point of the golden tests: they run wherever the golden folder exists and report
// "skipped" (exit KL_SKIP_CODE, ctest SKIP_RETURN_CODE) only where it does not.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <cstdio>
#include <string_view>

#include "tests/support/test_support.h"

int main(int argc, char** argv) {
  bool listing = false;
  for (int i = 1; i < argc; ++i) listing |= std::string_view(argv[i]).rfind("--list", 0) == 0;
  if (!listing && !kl::test::golden_dir()) {
    std::fprintf(stderr,
                 "golden data not found (set KL_GOLDEN_DIR or place it at ../shared/golden): "
                 "skipping\n");
    return KL_SKIP_CODE;
  }
  return Catch::Session().run(argc, argv);
}
