// Incremental detokenizer (see detokenizer.h).
#include "server/tokenizer/detokenizer.h"

#include "server/tokenizer/utf8.h"

namespace kl::tok {

IncrementalDetokenizer::IncrementalDetokenizer(const Tokenizer& tok, DetokenizerOptions options)
    : tok_(tok), options_(std::move(options)), matcher_([&] {
        // Stop strings are matched on valid UTF-8 text; sanitising them keeps the "held text
        // starts on a character boundary" property even for a malformed stop string.
        std::vector<std::string> s;
        for (const auto& x : options_.stop) s.push_back(sanitize_utf8(x));
        return s;
      }()) {}

DetokenizerDelta IncrementalDetokenizer::push(TokenId id) {
  if (stopped_) return {};
  if (options_.skip_special_tokens && tok_.is_flagged_special(id)) return {};
  const std::string* bytes = tok_.token_bytes(id);
  if (!bytes) return {};
  pending_bytes_ += *bytes;
  const size_t tail = utf8_incomplete_tail(pending_bytes_);
  std::string ready =
      sanitize_utf8(std::string_view(pending_bytes_).substr(0, pending_bytes_.size() - tail));
  pending_bytes_.erase(0, pending_bytes_.size() - tail);
  return feed_text(std::move(ready), /*final=*/false);
}

DetokenizerDelta IncrementalDetokenizer::finish() {
  if (stopped_) return {};
  std::string ready = sanitize_utf8(pending_bytes_);
  pending_bytes_.clear();
  return feed_text(std::move(ready), /*final=*/true);
}

DetokenizerDelta IncrementalDetokenizer::feed_text(std::string ready, bool final) {
  DetokenizerDelta out;
  if (matcher_.empty()) {
    out.text = std::move(ready);
    emitted_ += out.text;
    return out;
  }
  const size_t held_before = held_.size();
  held_ += ready;
  if (auto m = matcher_.feed(ready)) {
    // The match ends inside `ready`, at held_before + m->end of the held buffer.
    const size_t match_end = held_before + m->end;
    const size_t cut = options_.include_stop_str_in_output ? match_end : match_end - m->length;
    out.text = held_.substr(0, cut);
    out.stop_index = m->index;
    stopped_ = true;
    held_.clear();
  } else if (final) {
    out.text = std::move(held_);
    held_.clear();
  } else {
    const size_t keep = matcher_.pending();
    out.text = held_.substr(0, held_.size() - keep);
    held_.erase(0, held_.size() - keep);
  }
  emitted_ += out.text;
  return out;
}

}  // namespace kl::tok
