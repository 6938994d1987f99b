// Shared fixtures of the tokenizer tests: a small Kimi-style vocabulary trained on a fixed text
// (the real tiktoken.model is not available to CI), written as a checkpoint tokenizer directory.
#pragma once

#include <memory>
#include <string>

#include "server/tokenizer/kimi_tokenizer.h"

namespace kl::test {

// Fixed training text covering the words of the spec §6.2 examples and tool-call envelopes.
const std::string& tokenizer_training_text();

// A Kimi-mode tokenizer with `num_regular` regular tokens (trained once per size, cached) and the
// spec §6.1 special table at ids num_regular + offset.
std::shared_ptr<const kl::tok::Tokenizer> small_kimi_tokenizer(int num_regular = 512);

// Writes tiktoken.model (and tokenizer_config.json when `config` is not null) into `dir`.
void write_tokenizer_dir(const std::string& dir, const kl::tok::BpeRanks& ranks,
                         const nlohmann::json* config);

}  // namespace kl::test
