// The seeded multilingual corpus on which our BPE engine is compared with js-tiktoken (and which
// the robustness and benchmark code reuse).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace kl::test {

struct CorpusText {
  std::string name;
  std::string text;
};

// English prose, source code, Chinese, Japanese, Korean, Arabic, emoji with ZWJ sequences,
// digits, long whitespace runs, CRLF, and random strings over code points assigned in Unicode 14
// (PCRE2 10.42's tables; never U+FEFF or U+0085, where JavaScript's and Rust's \s disagree, and
// never surrogates). Identical for a given seed on every platform.
std::vector<CorpusText> tokenizer_corpus(uint64_t seed = 20240607);

// Larger single-language samples for the benchmark.
std::string english_sample();
std::string chinese_sample();

}  // namespace kl::test
