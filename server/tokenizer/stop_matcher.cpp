// Aho-Corasick construction and streaming search (see stop_matcher.h).
#include "server/tokenizer/stop_matcher.h"

#include <algorithm>
#include <deque>

namespace kl::tok {

StopMatcher::StopMatcher(const std::vector<std::string>& stops) {
  next_.emplace_back();
  fail_.push_back(0);
  depth_.push_back(0);
  out_index_.push_back(-1);
  out_len_.push_back(0);
  for (size_t p = 0; p < stops.size(); ++p) {
    const std::string& s = stops[p];
    if (s.empty()) continue;
    ++num_patterns_;
    int st = 0;
    for (unsigned char b : s) {
      int c = child(st, b);
      if (c < 0) {
        c = static_cast<int>(next_.size());
        next_.emplace_back();
        fail_.push_back(0);
        depth_.push_back(depth_[st] + 1);
        out_index_.push_back(-1);
        out_len_.push_back(0);
        auto& v = next_[st];
        v.insert(std::lower_bound(v.begin(), v.end(), std::make_pair(b, 0)), {b, c});
      }
      st = c;
    }
    if (out_index_[st] < 0) {  // a duplicate keeps the first index
      out_index_[st] = static_cast<int>(p);
      out_len_[st] = s.size();
    }
  }
  // Breadth-first: failure links, then inherit the longest suffix match from the failure state
  // (a state's own pattern, if any, is longer than anything its failure state holds).
  std::deque<int> q;
  for (auto [b, c] : next_[0]) q.push_back(c);
  while (!q.empty()) {
    const int s = q.front();
    q.pop_front();
    if (out_index_[s] < 0 && out_index_[fail_[s]] >= 0) {
      out_index_[s] = out_index_[fail_[s]];
      out_len_[s] = out_len_[fail_[s]];
    }
    for (auto [b, c] : next_[s]) {
      int f = fail_[s];
      while (f != 0 && child(f, b) < 0) f = fail_[f];
      const int fc = child(f, b);
      fail_[c] = (fc >= 0 && fc != c) ? fc : 0;
      q.push_back(c);
    }
  }
}

int StopMatcher::child(int s, uint8_t b) const {
  const auto& v = next_[s];
  const auto it = std::lower_bound(v.begin(), v.end(), std::make_pair(b, 0));
  return it != v.end() && it->first == b ? it->second : -1;
}

int StopMatcher::step(int s, uint8_t b) const {
  while (true) {
    const int c = child(s, b);
    if (c >= 0) return c;
    if (s == 0) return 0;
    s = fail_[s];
  }
}

std::optional<StopMatcher::Match> StopMatcher::feed(std::string_view bytes) {
  if (num_patterns_ == 0) return std::nullopt;
  for (size_t i = 0; i < bytes.size(); ++i) {
    state_ = step(state_, static_cast<uint8_t>(bytes[i]));
    if (out_index_[state_] >= 0)
      return Match{i + 1, static_cast<size_t>(out_index_[state_]), out_len_[state_]};
  }
  return std::nullopt;
}

}  // namespace kl::tok
