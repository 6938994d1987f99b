// The regex pre-tokenizer: a compiled PCRE2 pattern (UTF + UCP, JIT) that splits text into the
// pieces that BPE then encodes independently, exactly like tiktoken's find_iter.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "server/tokenizer/regex_translate.h"

namespace kl::tok {

// Kimi's pat_str exactly as tokenization_kimi.py writes it (Rust regex syntax).
extern const std::string_view kKimiPattern;

class Pretokenizer {
 public:
  // `pcre2_pattern` must already be in PCRE2 syntax (see translate_pattern).
  explicit Pretokenizer(std::string pcre2_pattern);
  ~Pretokenizer();
  Pretokenizer(Pretokenizer&&) noexcept;
  Pretokenizer& operator=(Pretokenizer&&) noexcept;
  Pretokenizer(const Pretokenizer&) = delete;
  Pretokenizer& operator=(const Pretokenizer&) = delete;

  // Translates a pattern of the given dialect, then compiles it.
  static Pretokenizer from_dialect(std::string_view pattern, RegexDialect dialect);
  static Pretokenizer kimi() { return from_dialect(kKimiPattern, RegexDialect::kRust); }

  // Calls `fn(piece)` for every match, left to right. `text` must be valid UTF-8 (the caller
  // validates once; PCRE2 is told not to re-check on every call, which would be quadratic).
  // Thread-safe: per-call match data, per-thread JIT stack.
  void split(std::string_view text, const std::function<void(std::string_view)>& fn) const;
  std::vector<std::string> split(std::string_view text) const;

  const std::string& pattern() const { return pattern_; }

 private:
  struct Impl;
  std::string pattern_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace kl::tok
