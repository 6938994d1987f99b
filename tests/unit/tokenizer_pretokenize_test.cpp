// The Kimi pre-tokenizer against tiktoken's own splits (../shared/golden/tokenizer/
// kimi_pretokenize.json): every `pieces` list must be reproduced exactly.
#include <catch2/catch.hpp>

#include <fstream>

#include <nlohmann/json.hpp>

#include "server/tokenizer/pretokenizer.h"
#include "tests/support/test_support.h"

using namespace kl::tok;

TEST_CASE("Kimi pattern reproduces tiktoken's pieces", "[tokenizer][golden-data]") {
  const auto dir = kl::test::golden_dir();
  REQUIRE(dir.has_value());  // ../shared/golden is part of CI's checkout: never skip
  const std::string path = *dir + "/tokenizer/kimi_pretokenize.json";
  std::ifstream f(path);
  REQUIRE(f.good());
  const auto doc = nlohmann::json::parse(f);
  REQUIRE(doc.at("pattern").get<std::string>() == std::string(kKimiPattern));
  const auto pre = Pretokenizer::kimi();
  size_t n = 0;
  size_t failed = 0;
  for (const auto& c : doc.at("cases")) {
    const auto text = c.at("text").get<std::string>();
    const auto want = c.at("pieces").get<std::vector<std::string>>();
    const auto got = pre.split(text);
    ++n;
    if (got != want) {
      ++failed;
      INFO("text: " << nlohmann::json(text).dump());
      INFO("want: " << nlohmann::json(want).dump());
      INFO("got:  " << nlohmann::json(got).dump());
      CHECK(got == want);
    }
  }
  CHECK(n >= 200);
  CHECK(failed == 0);
}
