// BPE training with incremental pair counts (see bpe_trainer.h).
#include "server/tokenizer/bpe_trainer.h"

#include <algorithm>
#include <map>
#include <set>
#include <tuple>
#include <unordered_map>
#include <unordered_set>

#include "engine/core/error.h"
#include "server/tokenizer/base64_sha256.h"

namespace kl::tok {

namespace {

using Pair = std::pair<TokenId, TokenId>;

struct PairHash {
  size_t operator()(const Pair& p) const noexcept {
    return std::hash<uint64_t>()((uint64_t(uint32_t(p.first)) << 32) | uint32_t(p.second));
  }
};

}  // namespace

BpeRanks train_bpe(std::string_view corpus, const Pretokenizer& pre, int num_tokens) {
  if (num_tokens < 256) fail("BPE training: need at least 256 tokens, got {}", num_tokens);
  // Unique pieces with their counts, in byte order (std::map) for determinism.
  std::map<std::string, int64_t> piece_counts;
  pre.split(corpus, [&](std::string_view p) { ++piece_counts[std::string(p)]; });

  std::vector<std::string> token_bytes;
  for (int b = 0; b < 256; ++b) token_bytes.emplace_back(1, static_cast<char>(b));
  std::unordered_map<std::string, TokenId> id_of;
  for (int b = 0; b < 256; ++b) id_of[token_bytes[b]] = b;

  std::vector<std::vector<TokenId>> words;
  std::vector<int64_t> weights;
  for (const auto& [piece, count] : piece_counts) {
    std::vector<TokenId> w;
    for (unsigned char c : piece) w.push_back(c);
    words.push_back(std::move(w));
    weights.push_back(count);
  }

  // Pair counts, an ordered view for "most frequent, then smallest pair", and which words hold
  // each pair (a superset: entries may be stale and are re-checked).
  std::unordered_map<Pair, int64_t, PairHash> counts;
  std::set<std::tuple<int64_t, TokenId, TokenId>> order;  // (-count, left, right)
  std::unordered_map<Pair, std::unordered_set<size_t>, PairHash> where;
  auto bump = [&](const Pair& p, int64_t delta, size_t word) {
    int64_t& c = counts[p];
    if (c > 0) order.erase({-c, p.first, p.second});
    c += delta;
    if (c > 0) order.insert({-c, p.first, p.second});
    if (delta > 0) where[p].insert(word);
  };
  auto add_word_pairs = [&](size_t wi, int64_t sign) {
    const auto& w = words[wi];
    for (size_t i = 0; i + 1 < w.size(); ++i) bump({w[i], w[i + 1]}, sign * weights[wi], wi);
  };
  for (size_t wi = 0; wi < words.size(); ++wi) add_word_pairs(wi, +1);

  while (static_cast<int>(token_bytes.size()) < num_tokens) {
    if (order.empty())
      fail("BPE training: the corpus has no more pairs to merge at {} of {} tokens",
           token_bytes.size(), num_tokens);
    const auto [neg, left, right] = *order.begin();
    const Pair best{left, right};
    std::string merged = token_bytes[left] + token_bytes[right];
    TokenId id;
    auto it = id_of.find(merged);
    if (it != id_of.end()) {
      id = it->second;  // same bytes reached by another split: merge without a new rank
    } else {
      id = static_cast<TokenId>(token_bytes.size());
      token_bytes.push_back(merged);
      id_of.emplace(std::move(merged), id);
    }
    std::vector<size_t> hits(where[best].begin(), where[best].end());
    std::sort(hits.begin(), hits.end());
    for (size_t wi : hits) {
      auto& w = words[wi];
      bool has = false;
      for (size_t i = 0; i + 1 < w.size() && !has; ++i) has = w[i] == left && w[i + 1] == right;
      if (!has) continue;
      add_word_pairs(wi, -1);
      std::vector<TokenId> nw;
      for (size_t i = 0; i < w.size(); ++i) {
        if (i + 1 < w.size() && w[i] == left && w[i + 1] == right) {
          nw.push_back(id);
          ++i;
        } else {
          nw.push_back(w[i]);
        }
      }
      w = std::move(nw);
      add_word_pairs(wi, +1);
    }
    where.erase(best);
  }
  BpeRanks ranks;
  for (size_t i = 0; i < token_bytes.size(); ++i)
    ranks.add(token_bytes[i], static_cast<TokenId>(i));
  return ranks;
}

std::string to_tiktoken_model(const BpeRanks& ranks) {
  std::string out;
  for (TokenId r = 0; r < ranks.rank_end(); ++r) {
    const std::string* b = ranks.bytes(r);
    if (!b) continue;
    out += base64_encode(*b);
    out += ' ';
    out += std::to_string(r);
    out += '\n';
  }
  return out;
}

}  // namespace kl::tok
