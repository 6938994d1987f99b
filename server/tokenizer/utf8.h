// UTF-8 helpers shared by the tokenizer pieces: decoding, validation, the length of a complete
// prefix (for streaming), and Python's str.isspace() (the Kimi input-cutting rule).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace kl::tok {

inline constexpr char32_t kReplacementChar = 0xFFFD;

// Appends the UTF-8 encoding of `cp` (a scalar value; surrogates and values above U+10FFFF are
// encoded as U+FFFD so that the output is always valid UTF-8).
void append_utf8(std::string& out, char32_t cp);

// Decodes one code point at s[pos]. Returns the number of bytes consumed (1..4) and sets `cp`;
// on an invalid or truncated sequence returns 0 (cp untouched). Overlong forms and surrogates are
// invalid, as in RFC 3629.
size_t decode_utf8(std::string_view s, size_t pos, char32_t& cp);

// Byte offset of the first invalid byte, or npos when the whole string is valid UTF-8.
size_t find_invalid_utf8(std::string_view s);
inline bool is_valid_utf8(std::string_view s) {
  return find_invalid_utf8(s) == std::string_view::npos;
}

// Streaming view of a byte buffer: how many leading bytes can be emitted now. Complete sequences
// count; a trailing sequence that is a valid but unfinished prefix is held back; bytes that can
// never start or continue a valid sequence are reported through `invalid_at` (the offset of the
// first such byte, npos if none) so that the caller can replace them.
size_t complete_utf8_prefix(std::string_view s, size_t& invalid_at);

// Number of trailing bytes that form a valid but unfinished sequence (0..3): what a streaming
// decoder holds back until the next bytes arrive.
size_t utf8_incomplete_tail(std::string_view s);

// Replaces every invalid sequence by U+FFFD (one per maximal invalid subpart, like Python's
// errors="replace" and the WHATWG decoder).
std::string sanitize_utf8(std::string_view s);

// Number of code points (invalid bytes count one each).
size_t count_code_points(std::string_view s);

// Python's str.isspace() for one code point: Unicode bidi class WS, B or S, or category Zs.
bool python_isspace(char32_t cp);

}  // namespace kl::tok
