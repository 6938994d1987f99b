// Tokenizer: loading tiktoken ranks, special-token scanning, Kimi input cutting, encode/decode.
#include "server/tokenizer/tokenizer.h"

#include <algorithm>
#include <fstream>
#include <sstream>

#include "engine/core/error.h"
#include "server/tokenizer/base64_sha256.h"
#include "server/tokenizer/utf8.h"

namespace kl::tok {

Tokenizer::Tokenizer(BpeRanks ranks, std::vector<SpecialToken> specials, Pretokenizer pre,
                     TokenizerOptions options)
    : ranks_(std::move(ranks)),
      specials_(std::move(specials)),
      specials_by_first_byte_(256),
      pre_(std::move(pre)),
      options_(options) {
  if (!ranks_.has_all_bytes())
    fail("tokenizer: the vocabulary lacks some single-byte tokens (not a byte-level BPE)");
  vocab_size_ = ranks_.rank_end();
  for (size_t i = 0; i < specials_.size(); ++i) {
    const SpecialToken& s = specials_[i];
    if (s.text.empty()) fail("tokenizer: special token {} has empty text", s.id);
    if (s.id < 0) fail("tokenizer: special token '{}' has negative id {}", s.text, s.id);
    if (ranks_.bytes(s.id) != nullptr)
      fail("tokenizer: special token '{}' reuses regular id {}", s.text, s.id);
    if (!special_index_.emplace(s.id, i).second)
      fail("tokenizer: two special tokens share id {}", s.id);
    if (!special_by_text_.emplace(s.text, s.id).second)
      fail("tokenizer: special token text '{}' appears twice", s.text);
    vocab_size_ = std::max(vocab_size_, s.id + 1);
  }
  for (const SpecialToken& s : specials_)
    specials_by_first_byte_[static_cast<uint8_t>(s.text[0])].push_back(&s);
  for (auto& v : specials_by_first_byte_)
    std::sort(v.begin(), v.end(), [](const SpecialToken* a, const SpecialToken* b) {
      return a->text.size() != b->text.size() ? a->text.size() > b->text.size() : a->id < b->id;
    });
}

BpeRanks Tokenizer::parse_tiktoken_ranks(std::string_view contents, std::string_view name) {
  BpeRanks ranks;
  size_t line_no = 0;
  size_t pos = 0;
  while (pos < contents.size()) {
    size_t eol = contents.find('\n', pos);
    if (eol == std::string_view::npos) eol = contents.size();
    std::string_view line = contents.substr(pos, eol - pos);
    pos = eol + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) continue;
    const size_t sp = line.find(' ');
    if (sp == std::string_view::npos || line.find(' ', sp + 1) != std::string_view::npos)
      fail("{}:{}: expected 'base64 rank'", name, line_no);
    auto bytes = base64_decode(line.substr(0, sp));
    if (!bytes || bytes->empty()) fail("{}:{}: bad base64 token", name, line_no);
    const std::string_view num = line.substr(sp + 1);
    int64_t rank = 0;
    if (num.empty() || num.size() > 10) fail("{}:{}: bad rank", name, line_no);
    for (char c : num) {
      if (c < '0' || c > '9') fail("{}:{}: bad rank", name, line_no);
      rank = rank * 10 + (c - '0');
    }
    if (rank > INT32_MAX / 2) fail("{}:{}: rank {} too large", name, line_no, rank);
    try {
      ranks.add(std::move(*bytes), static_cast<TokenId>(rank));
    } catch (const Error& e) {
      fail("{}:{}: {}", name, line_no, e.what());
    }
  }
  if (ranks.size() == 0) fail("{}: no tokens", name);
  return ranks;
}

BpeRanks Tokenizer::load_tiktoken_ranks(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) fail("cannot open tokenizer file {}", path);
  std::stringstream ss;
  ss << f.rdbuf();
  return parse_tiktoken_ranks(ss.str(), path);
}

std::vector<std::string_view> kimi_cut(std::string_view text, size_t max_encode_chars,
                                       size_t max_run_chars) {
  // Mirrors tokenization_kimi.py: slice into max_encode_chars code points, then inside each slice
  // cut a run of same-class (isspace or not) code points once it exceeds max_run_chars.
  std::vector<std::string_view> out;
  size_t pos = 0;
  while (pos < text.size()) {
    // One outer slice: [pos, slice_end).
    size_t slice_end = pos;
    for (size_t n = 0; n < max_encode_chars && slice_end < text.size(); ++n) {
      char32_t cp = 0;
      const size_t len = decode_utf8(text, slice_end, cp);
      slice_end += len == 0 ? 1 : len;
    }
    std::string_view s = text.substr(pos, slice_end - pos);
    size_t start = 0;
    size_t i = 0;
    size_t run = 0;
    bool run_space = false;
    bool first = true;
    while (i < s.size()) {
      char32_t cp = 0;
      size_t len = decode_utf8(s, i, cp);
      if (len == 0) {
        len = 1;
        cp = kReplacementChar;
      }
      const bool sp = python_isspace(cp);
      if (first) {
        run_space = sp;
        run = 1;
        first = false;
      } else if (sp != run_space) {
        run = 1;
        run_space = sp;
      } else if (++run > max_run_chars) {
        out.push_back(s.substr(start, i - start));
        start = i;
        run = 1;
      }
      i += len;
    }
    out.push_back(s.substr(start));
    pos = slice_end;
  }
  return out;
}

std::optional<std::pair<size_t, const SpecialToken*>> Tokenizer::find_special(std::string_view text,
                                                                              size_t from) const {
  for (size_t i = from; i < text.size(); ++i) {
    const auto& cands = specials_by_first_byte_[static_cast<uint8_t>(text[i])];
    for (const SpecialToken* s : cands)
      if (text.compare(i, s->text.size(), s->text) == 0) return std::make_pair(i, s);
  }
  return std::nullopt;
}

void Tokenizer::encode_chunk(std::string_view text, bool allow_special,
                             std::vector<TokenId>& out) const {
  auto ordinary = [&](std::string_view t) {
    pre_.split(t, [&](std::string_view piece) { ranks_.encode_piece(piece, out); });
  };
  if (!allow_special || specials_.empty()) {
    ordinary(text);
    return;
  }
  size_t pos = 0;
  while (pos <= text.size()) {
    auto hit = find_special(text, pos);
    if (!hit) {
      ordinary(text.substr(pos));
      return;
    }
    ordinary(text.substr(pos, hit->first - pos));
    out.push_back(hit->second->id);
    pos = hit->first + hit->second->text.size();
  }
}

std::vector<TokenId> Tokenizer::encode(std::string_view text, bool allow_special) const {
  const size_t bad = find_invalid_utf8(text);
  if (bad != std::string_view::npos) fail("tokenizer: input is not valid UTF-8 (byte {})", bad);
  std::vector<TokenId> out;
  out.reserve(text.size() / 3 + 4);
  if (options_.kimi_cutting) {
    for (std::string_view chunk : kimi_cut(text, options_.max_encode_chars, options_.max_run_chars))
      encode_chunk(chunk, allow_special, out);
  } else {
    encode_chunk(text, allow_special, out);
  }
  return out;
}

void Tokenizer::encode_ordinary(std::string_view text, std::vector<TokenId>& out) const {
  const size_t bad = find_invalid_utf8(text);
  if (bad != std::string_view::npos) fail("tokenizer: input is not valid UTF-8 (byte {})", bad);
  if (options_.kimi_cutting) {
    for (std::string_view chunk : kimi_cut(text, options_.max_encode_chars, options_.max_run_chars))
      encode_chunk(chunk, false, out);
  } else {
    encode_chunk(text, false, out);
  }
}

const std::string* Tokenizer::token_bytes(TokenId id) const {
  if (const std::string* b = ranks_.bytes(id)) return b;
  const auto it = special_index_.find(id);
  return it == special_index_.end() ? nullptr : &specials_[it->second].text;
}

bool Tokenizer::is_special(TokenId id) const {
  return special_index_.count(id) != 0;
}

bool Tokenizer::is_flagged_special(TokenId id) const {
  const auto it = special_index_.find(id);
  return it != special_index_.end() && specials_[it->second].special;
}

std::optional<TokenId> Tokenizer::special_id(std::string_view text) const {
  const auto it = special_by_text_.find(std::string(text));
  if (it == special_by_text_.end()) return std::nullopt;
  return it->second;
}

std::string Tokenizer::decode_bytes(const std::vector<TokenId>& ids, bool skip_special) const {
  std::string out;
  for (TokenId id : ids) {
    if (skip_special && is_flagged_special(id)) continue;
    if (const std::string* b = token_bytes(id)) out += *b;
  }
  return out;
}

std::string Tokenizer::decode(const std::vector<TokenId>& ids, bool skip_special) const {
  return sanitize_utf8(decode_bytes(ids, skip_special));
}

}  // namespace kl::tok
