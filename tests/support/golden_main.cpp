// Entry point of the golden tests. The project's own cases (tests/data/golden) always run; tiny-a
// runs wherever the shared golden folder exists, and its absence is said loudly, never hidden.
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
                 "NOTE: shared golden data not found (set KL_GOLDEN_DIR or place it at "
                 "../shared/golden): tiny-a is not checked, only tests/data/golden cases\n");
  }
  return Catch::Session().run(argc, argv);
}
