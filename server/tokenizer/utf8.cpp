// UTF-8 decoding/validation and Python's isspace table (see utf8.h).
#include "server/tokenizer/utf8.h"

namespace kl::tok {

void append_utf8(std::string& out, char32_t cp) {
  if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) cp = kReplacementChar;
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

namespace {

// Expected sequence length from the lead byte, 0 for bytes that cannot start a sequence.
inline size_t lead_length(uint8_t b) {
  if (b < 0x80) return 1;
  if (b >= 0xC2 && b <= 0xDF) return 2;
  if (b >= 0xE0 && b <= 0xEF) return 3;
  if (b >= 0xF0 && b <= 0xF4) return 4;
  return 0;
}

// Valid range of the second byte given the lead byte (excludes overlongs, surrogates, > U+10FFFF).
inline bool second_ok(uint8_t lead, uint8_t b) {
  switch (lead) {
    case 0xE0:
      return b >= 0xA0 && b <= 0xBF;
    case 0xED:
      return b >= 0x80 && b <= 0x9F;
    case 0xF0:
      return b >= 0x90 && b <= 0xBF;
    case 0xF4:
      return b >= 0x80 && b <= 0x8F;
    default:
      return b >= 0x80 && b <= 0xBF;
  }
}

// Length of the maximal valid prefix of a sequence starting at s[pos] (how far a decoder gets
// before failing), and whether it is complete. Used both to validate and to hold back tails.
struct SeqScan {
  size_t need = 0;  // total length the lead byte announces (0: invalid lead)
  size_t have = 0;  // bytes that are valid so far (<= need)
};

inline SeqScan scan_seq(std::string_view s, size_t pos) {
  SeqScan r;
  const auto lead = static_cast<uint8_t>(s[pos]);
  r.need = lead_length(lead);
  if (r.need == 0) return r;
  r.have = 1;
  while (r.have < r.need && pos + r.have < s.size()) {
    const auto b = static_cast<uint8_t>(s[pos + r.have]);
    const bool ok = r.have == 1 ? second_ok(lead, b) : (b >= 0x80 && b <= 0xBF);
    if (!ok) break;
    ++r.have;
  }
  return r;
}

}  // namespace

size_t decode_utf8(std::string_view s, size_t pos, char32_t& cp) {
  if (pos >= s.size()) return 0;
  const SeqScan sc = scan_seq(s, pos);
  if (sc.need == 0 || sc.have != sc.need) return 0;
  const auto b0 = static_cast<uint8_t>(s[pos]);
  if (sc.need == 1) {
    cp = b0;
  } else {
    char32_t v = b0 & (0x7F >> sc.need);
    for (size_t i = 1; i < sc.need; ++i) v = (v << 6) | (static_cast<uint8_t>(s[pos + i]) & 0x3F);
    cp = v;
  }
  return sc.need;
}

size_t find_invalid_utf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    if (static_cast<uint8_t>(s[i]) < 0x80) {
      ++i;
      continue;
    }
    const SeqScan sc = scan_seq(s, i);
    if (sc.need == 0 || sc.have != sc.need) return i;
    i += sc.need;
  }
  return std::string_view::npos;
}

size_t complete_utf8_prefix(std::string_view s, size_t& invalid_at) {
  invalid_at = std::string_view::npos;
  size_t i = 0;
  while (i < s.size()) {
    if (static_cast<uint8_t>(s[i]) < 0x80) {
      ++i;
      continue;
    }
    const SeqScan sc = scan_seq(s, i);
    if (sc.need != 0 && sc.have == sc.need) {
      i += sc.need;
      continue;
    }
    // A valid but unfinished sequence at the very end may still be completed by later bytes.
    if (sc.need != 0 && i + sc.have == s.size()) return i;
    invalid_at = i;
    return i;
  }
  return i;
}

size_t utf8_incomplete_tail(std::string_view s) {
  // A sequence is at most 4 bytes, so only the last 3 bytes can start an unfinished one.
  const size_t from = s.size() > 3 ? s.size() - 3 : 0;
  for (size_t i = from; i < s.size(); ++i) {
    const auto b = static_cast<uint8_t>(s[i]);
    if (b < 0xC0) continue;  // ASCII or continuation: cannot start the tail
    const SeqScan sc = scan_seq(s, i);
    if (sc.need != 0 && sc.have < sc.need && i + sc.have == s.size()) return s.size() - i;
  }
  return 0;
}

std::string sanitize_utf8(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    if (static_cast<uint8_t>(s[i]) < 0x80) {
      out.push_back(s[i++]);
      continue;
    }
    const SeqScan sc = scan_seq(s, i);
    if (sc.need != 0 && sc.have == sc.need) {
      out.append(s.substr(i, sc.need));
      i += sc.need;
    } else {
      append_utf8(out, kReplacementChar);
      i += sc.have == 0 ? 1 : sc.have;  // the maximal invalid subpart
    }
  }
  return out;
}

size_t count_code_points(std::string_view s) {
  size_t n = 0;
  size_t i = 0;
  char32_t cp = 0;
  while (i < s.size()) {
    const size_t len = decode_utf8(s, i, cp);
    i += len == 0 ? 1 : len;
    ++n;
  }
  return n;
}

bool python_isspace(char32_t cp) {
  if (cp <= 0x20) return (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x20);
  switch (cp) {
    case 0x85:
    case 0xA0:
    case 0x1680:
    case 0x2028:
    case 0x2029:
    case 0x202F:
    case 0x205F:
    case 0x3000:
      return true;
    default:
      return cp >= 0x2000 && cp <= 0x200A;
  }
}

}  // namespace kl::tok
