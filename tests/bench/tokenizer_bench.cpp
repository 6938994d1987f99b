// Tokenizer encode throughput (MB/s, one core) on English and Chinese text with the cl100k_base
// and o200k_base vocabularies exported by tests/clients/tiktoken_export.mjs; run by
// scripts/bench-tokenizer.sh next to js-tiktoken on the same text
// (tests/clients/tiktoken_bench.mjs). Usage: kl_tokenizer_bench DIR   (DIR =
// build/tests/tiktoken_js after the js comparison ran)
#include <chrono>
#include <cstdio>
#include <fstream>

#include <nlohmann/json.hpp>

#include "server/tokenizer/tokenizer.h"
#include "tests/unit/tokenizer_corpus.h"

int main(int argc, char** argv) {
  using namespace kl::tok;
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s DIR\n", argv[0]);
    return 2;
  }
  const std::string dir = argv[1];
  const std::pair<const char*, std::string> texts[] = {{"english", kl::test::english_sample()},
                                                       {"chinese", kl::test::chinese_sample()}};
  for (const auto& [name, text] : texts) std::ofstream(dir + "/bench_" + name + ".txt") << text;
  try {
    // The third row has no js-tiktoken twin: the Kimi pattern (and input cutting) over the
    // o200k ranks, to show what the Kimi pre-tokenizer costs.
    for (const std::string enc : {"cl100k_base", "o200k_base", "kimi_pattern_o200k"}) {
      const bool kimi = enc == "kimi_pattern_o200k";
      const std::string file = kimi ? "o200k_base" : enc;
      std::ifstream mf(dir + "/" + file + ".json");
      const auto meta = nlohmann::json::parse(mf);
      TokenizerOptions opt;
      opt.kimi_cutting = kimi;
      const Tokenizer tok(Tokenizer::load_tiktoken_ranks(dir + "/" + file + ".tiktoken"), {},
                          kimi ? Pretokenizer::kimi()
                               : Pretokenizer::from_dialect(meta.at("pat_str").get<std::string>(),
                                                            RegexDialect::kJavaScript),
                          opt);
      for (const auto& [name, text] : texts) {
        double best = 1e30;
        size_t n = 0;
        for (int rep = 0; rep < 5; ++rep) {
          const auto t0 = std::chrono::steady_clock::now();
          n = tok.encode(text).size();
          const double s =
              std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
          best = std::min(best, s);
        }
        std::printf(
            "{\"impl\": \"klserve\", \"encoding\": \"%s\", \"text\": \"%s\", \"bytes\": %zu, "
            "\"tokens\": %zu, \"mb_per_s\": %.2f}\n",
            enc.c_str(), name, text.size(), n, text.size() / best / 1e6);
      }
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s (run the tokenizer_js_* tests first)\n", e.what());
    return 1;
  }
  return 0;
}
