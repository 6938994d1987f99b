// Streaming multi-string search for stop strings (Aho-Corasick over bytes): reports the first
// completed match and, between matches, how many trailing bytes might still begin one, which is
// exactly what a streaming detokenizer must hold back.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace kl::tok {

class StopMatcher {
 public:
  // Empty strings are ignored (they would match everywhere).
  explicit StopMatcher(const std::vector<std::string>& stops);

  struct Match {
    size_t end;    // offset in `bytes` just past the match
    size_t index;  // which stop string (the longest one ending there; first listed on ties)
    size_t length;
  };
  // Consumes `bytes` up to and including the first match; returns it, or nullopt when all bytes
  // were consumed without one. The state carries over between calls (matches span calls).
  std::optional<Match> feed(std::string_view bytes);

  // Length of the longest suffix of everything fed so far that is a proper prefix of a stop
  // string.
  size_t pending() const { return depth_[state_]; }
  bool empty() const { return num_patterns_ == 0; }

 private:
  int child(int s, uint8_t b) const;
  int step(int s, uint8_t b) const;

  std::vector<std::vector<std::pair<uint8_t, int>>> next_;  // sorted transitions per state
  std::vector<int> fail_;
  std::vector<size_t> depth_;
  std::vector<int> out_index_;  // longest stop string that is a suffix of the state, or -1
  std::vector<size_t> out_len_;
  size_t num_patterns_ = 0;
  int state_ = 0;
};

}  // namespace kl::tok
