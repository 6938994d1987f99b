// Incremental detokenizer for streaming: turns generated ids into text deltas that are always
// valid UTF-8 (a character split across tokens is held until complete), honours
// skip_special_tokens, and cuts the output at the first stop string even when it spans tokens:
// text that might begin a stop string is held back, and nothing after a stop string is emitted.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "server/tokenizer/stop_matcher.h"
#include "server/tokenizer/tokenizer.h"

namespace kl::tok {

struct DetokenizerOptions {
  // Skip added tokens flagged `special` (Kimi's tool-call markers are not flagged, so they stay
  // in the text for the tool-call parser, as with HF's decode).
  bool skip_special_tokens = true;
  std::vector<std::string> stop;            // stop strings (empty ones are ignored)
  bool include_stop_str_in_output = false;  // vLLM's option
};

struct DetokenizerDelta {
  std::string text;                  // new text, valid UTF-8 (may be empty)
  std::optional<size_t> stop_index;  // set once, when a stop string matched
};

class IncrementalDetokenizer {
 public:
  IncrementalDetokenizer(const Tokenizer& tok, DetokenizerOptions options);

  // Adds one generated token. After a stop string has matched, returns empty deltas.
  DetokenizerDelta push(TokenId id);
  // End of generation: releases held text (an unfinished character becomes U+FFFD).
  DetokenizerDelta finish();

  bool stopped() const { return stopped_; }
  // Everything emitted so far (the concatenation of all deltas).
  const std::string& text() const { return emitted_; }

 private:
  DetokenizerDelta feed_text(std::string ready, bool final);

  const Tokenizer& tok_;
  DetokenizerOptions options_;
  StopMatcher matcher_;
  std::string pending_bytes_;  // unfinished UTF-8 sequence from the last token(s)
  std::string held_;           // complete text that may be the start of a stop string
  std::string emitted_;
  bool stopped_ = false;
};

}  // namespace kl::tok
