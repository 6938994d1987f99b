// The tokenizer of the embedded default model, built by the project itself: byte-level BPE
// learned deterministically from a fixed text in this repository, in tiktoken format, with the
// Kimi special-token table at the same offsets after the regular tokens as in the real model.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "server/tokenizer/kimi_tokenizer.h"

namespace kl::tok {

// Regular tokens of the default tokenizer; special ids follow (BOS = 2048, EOS = 2049,
// <|im_end|> = 2050, ... [PAD] = 2303) and the model's vocab_size is 2048 + 256 = 2304.
inline constexpr TokenId kDefaultNumRegularTokens = 2048;
inline constexpr TokenId kDefaultVocabSize = kDefaultNumRegularTokens + kKimiNumReservedSpecial;

// The fixed training text (English, code, Chinese, Japanese, Korean, Arabic, numbers).
std::string_view default_tokenizer_corpus();

// Learns the ranks (same result on every run and platform).
BpeRanks train_default_ranks(TokenId num_regular = kDefaultNumRegularTokens);

// tokenizer_config.json for a Kimi-format tokenizer with `num_regular` regular tokens:
// added_tokens_decoder for the named specials, bos/eos/pad/unk strings, the built-in chat
// template, and the tokenizer class.
nlohmann::json default_tokenizer_config(TokenId num_regular = kDefaultNumRegularTokens);

// Writes tiktoken.model and tokenizer_config.json into `dir` (created if needed), so that
// load_kimi_tokenizer(dir) loads it like a real checkpoint's tokenizer.
void write_default_tokenizer(const std::string& dir,
                             TokenId num_regular = kDefaultNumRegularTokens);

}  // namespace kl::tok
