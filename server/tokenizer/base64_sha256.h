// Small self-contained codecs the tokenizer needs: base64 (tiktoken.model lines) and SHA-256
// (fingerprints of chat templates), so that the library links nothing beyond PCRE2 and JSON.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace kl::tok {

// Standard alphabet with '=' padding (RFC 4648 §4). nullopt on any malformed input.
std::optional<std::string> base64_decode(std::string_view in);
std::string base64_encode(std::string_view bytes);

// SHA-256 (FIPS 180-4), incremental.
class Sha256 {
 public:
  Sha256();
  void update(std::string_view data);
  std::array<uint8_t, 32> finish();

 private:
  void block(const uint8_t* p);
  std::array<uint32_t, 8> h_;
  std::array<uint8_t, 64> buf_{};
  size_t buf_len_ = 0;
  uint64_t total_len_ = 0;
};

// Lower-case hex digest of `data`.
std::string sha256_hex(std::string_view data);

}  // namespace kl::tok
