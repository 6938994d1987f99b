// Deterministic byte-level BPE training, used to build the tokenizer of the embedded default
// model (issue item 7) and the small synthetic vocabularies of the tests.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "server/tokenizer/bpe.h"
#include "server/tokenizer/pretokenizer.h"

namespace kl::tok {

// Learns merges on the pieces `pre` cuts from `corpus` until the vocabulary has `num_tokens`
// regular tokens (ranks 0..255 are the single bytes in byte order, then one rank per learned
// token). Ties between equally frequent pairs break by the smaller (left, right) rank pair, so
// the result depends only on the inputs. Throws kl::Error if the corpus runs out of pairs first.
BpeRanks train_bpe(std::string_view corpus, const Pretokenizer& pre, int num_tokens);

// tiktoken.model text for `ranks` ("base64 rank" per line, by rank).
std::string to_tiktoken_model(const BpeRanks& ranks);

}  // namespace kl::tok
