// The tiktoken-format tokenizer: BPE ranks + special tokens + a pre-tokenizer. Encodes text to
// ids (optionally recognising special-token strings) and decodes ids to bytes. Immutable after
// construction, so one instance serves every thread.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "server/tokenizer/bpe.h"
#include "server/tokenizer/pretokenizer.h"

namespace kl::tok {

struct SpecialToken {
  std::string text;
  TokenId id = 0;
  // HF's flag: false for tokens such as Kimi's tool-call markers, which skip_special_tokens keeps.
  bool special = true;
};

struct TokenizerOptions {
  // Kimi's input cutting before the regex (tokenization_kimi.py): pieces of at most 400,000 code
  // points, and runs of more than 25,000 (Python isspace / non-isspace) code points split.
  bool kimi_cutting = false;
  size_t max_encode_chars = 400'000;
  size_t max_run_chars = 25'000;
};

class Tokenizer {
 public:
  Tokenizer(BpeRanks ranks, std::vector<SpecialToken> specials, Pretokenizer pre,
            TokenizerOptions options = {});

  // Loads a tiktoken.model file: one "base64(token bytes) rank" per line (blank lines skipped).
  static BpeRanks load_tiktoken_ranks(const std::string& path);
  static BpeRanks parse_tiktoken_ranks(std::string_view contents, std::string_view name);

  // With allow_special, exact occurrences of special-token strings become their ids (tiktoken's
  // allowed_special="all"); without, all text is ordinary text (what the chat template and the
  // API use for user text, so that nobody can inject a turn marker). Throws kl::Error if `text`
  // is not valid UTF-8.
  std::vector<TokenId> encode(std::string_view text, bool allow_special = false) const;
  void encode_ordinary(std::string_view text, std::vector<TokenId>& out) const;

  // Concatenated token bytes (may be invalid UTF-8 when cut mid-character). Unknown ids are
  // skipped; with skip_special, tokens flagged `special` are too.
  std::string decode_bytes(const std::vector<TokenId>& ids, bool skip_special = false) const;
  // decode_bytes with invalid sequences replaced by U+FFFD (errors="replace").
  std::string decode(const std::vector<TokenId>& ids, bool skip_special = false) const;

  // Bytes of one token (a special token's text for specials), nullptr for an unknown id.
  const std::string* token_bytes(TokenId id) const;
  bool is_special(TokenId id) const;          // any added token (control or reserved)
  bool is_flagged_special(TokenId id) const;  // added token whose `special` flag is set
  std::optional<TokenId> special_id(std::string_view text) const;
  const std::vector<SpecialToken>& specials() const { return specials_; }

  // One past the largest id (regular or special).
  TokenId vocab_size() const { return vocab_size_; }
  TokenId num_regular() const { return ranks_.rank_end(); }
  const BpeRanks& ranks() const { return ranks_; }
  const Pretokenizer& pretokenizer() const { return pre_; }
  const TokenizerOptions& options() const { return options_; }

 private:
  void encode_chunk(std::string_view text, bool allow_special, std::vector<TokenId>& out) const;
  // Position and length of the leftmost (then longest) special-token string at or after `from`.
  std::optional<std::pair<size_t, const SpecialToken*>> find_special(std::string_view text,
                                                                     size_t from) const;

  BpeRanks ranks_;
  std::vector<SpecialToken> specials_;
  std::unordered_map<TokenId, size_t> special_index_;  // id -> index in specials_
  std::unordered_map<std::string, TokenId> special_by_text_;
  // For the special-token scan: specials grouped by first byte, longest first.
  std::vector<std::vector<const SpecialToken*>> specials_by_first_byte_;
  Pretokenizer pre_;
  TokenizerOptions options_;
  TokenId vocab_size_ = 0;
};

// The byte ranges that Kimi's input cutting produces (exposed for tests).
std::vector<std::string_view> kimi_cut(std::string_view text, size_t max_encode_chars,
                                       size_t max_run_chars);

}  // namespace kl::tok
