// Unit tests of the tokenizer's building blocks: UTF-8 helpers, base64, SHA-256 (FIPS 180-4
// vectors), pattern translation, the two BPE merge implementations, tiktoken.model parsing.
#include <catch2/catch.hpp>

#include <random>

#include "engine/core/error.h"
#include "server/tokenizer/base64_sha256.h"
#include "server/tokenizer/bpe.h"
#include "server/tokenizer/bpe_trainer.h"
#include "server/tokenizer/pretokenizer.h"
#include "server/tokenizer/regex_translate.h"
#include "server/tokenizer/tokenizer.h"
#include "server/tokenizer/utf8.h"

using namespace kl::tok;

TEST_CASE("sha256 standard vectors", "[tokenizer]") {
  CHECK(sha256_hex("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  CHECK(sha256_hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  CHECK(sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq") ==
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  CHECK(
      sha256_hex("abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopq"
                 "klmnopqrlmnopqrsmnopqrstnopqrstu") ==
      "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");
  Sha256 s;
  const std::string chunk(1000, 'a');
  for (int i = 0; i < 1000; ++i) s.update(chunk);
  const auto d = s.finish();
  static constexpr char kHex[] = "0123456789abcdef";
  std::string hex;
  for (uint8_t b : d) hex += {kHex[b >> 4], kHex[b & 15]};
  CHECK(hex == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST_CASE("base64 round trip and rejects", "[tokenizer]") {
  CHECK(base64_encode("") == "");
  CHECK(base64_encode("f") == "Zg==");
  CHECK(base64_encode("fo") == "Zm8=");
  CHECK(base64_encode("foobar") == "Zm9vYmFy");
  CHECK(base64_decode("Zm9vYg==").value() == "foob");
  CHECK(base64_decode("IQ==").value() == "!");
  CHECK_FALSE(base64_decode("Zm9").has_value());
  CHECK_FALSE(base64_decode("Zm=v").has_value());
  CHECK_FALSE(base64_decode("Z===").has_value());
  CHECK_FALSE(base64_decode("Zm9*").has_value());
  std::mt19937 rng(7);
  for (int i = 0; i < 200; ++i) {
    std::string s(rng() % 40, '\0');
    for (char& c : s) c = static_cast<char>(rng());
    CHECK(base64_decode(base64_encode(s)).value() == s);
  }
}

TEST_CASE("utf8 helpers", "[tokenizer]") {
  CHECK(is_valid_utf8("héllo 世界 😀"));
  CHECK_FALSE(is_valid_utf8("\xC0\x80"));          // overlong
  CHECK_FALSE(is_valid_utf8("\xED\xA0\x80"));      // surrogate
  CHECK_FALSE(is_valid_utf8("\xF4\x90\x80\x80"));  // > U+10FFFF
  CHECK(find_invalid_utf8("ab\xFF") == 2);
  size_t bad = 0;
  CHECK(complete_utf8_prefix("ab\xE4\xB8", bad) == 2);  // unfinished 世 is held back
  CHECK(bad == std::string::npos);
  CHECK(complete_utf8_prefix("ab\xE4"
                             "c",
                             bad) == 2);
  CHECK(bad == 2);
  CHECK(sanitize_utf8("a\xE4\xB8"
                      "b\xFF") ==
        "a\xEF\xBF\xBD"
        "b\xEF\xBF\xBD");
  CHECK(count_code_points("a世😀") == 3);
  CHECK(python_isspace(0x1C));
  CHECK(python_isspace(0x85));
  CHECK_FALSE(python_isspace(0x180E));
  CHECK_FALSE(python_isspace(0x200B));
}

TEST_CASE("pattern translation", "[tokenizer]") {
  CHECK(translate_pattern("\\p{Han}+", RegexDialect::kRust) == "\\p{sc:Han}+");
  CHECK(translate_pattern("[\\p{Lu}\\p{M}&&[^\\p{Han}]]", RegexDialect::kRust) ==
        "[^\\p{Ll}\\p{Lt}\\p{Lm}\\p{Lo}\\p{N}\\p{P}\\p{S}\\p{Z}\\p{C}\\p{sc:Han}]");
  CHECK(translate_pattern("[ab&&[^b]]", RegexDialect::kRust) == "(?:(?![b])[ab])");
  CHECK(translate_pattern("\\d", RegexDialect::kJavaScript) == "[0-9]");
  CHECK_THROWS_AS(translate_pattern("[^a&&[^b]]", RegexDialect::kRust), kl::Error);
  CHECK_THROWS_AS(translate_pattern("\\w", RegexDialect::kRust), kl::Error);

  // The complement rewrite and the lookahead rewrite agree on every code point of the BMP and
  // the first supplementary planes (both compiled by PCRE2).
  const Pretokenizer a(
      translate_pattern("[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}&&[^\\p{Han}]]", RegexDialect::kRust));
  const Pretokenizer b("(?:(?![\\p{sc:Han}])[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}])");
  int mismatches = 0;
  for (char32_t cp = 1; cp < 0x32000; ++cp) {
    if (cp >= 0xD800 && cp <= 0xDFFF) continue;
    std::string s;
    append_utf8(s, cp);
    if (a.split(s).size() != b.split(s).size()) ++mismatches;
  }
  CHECK(mismatches == 0);
}

TEST_CASE("\\s follows the dialect, not PCRE2", "[tokenizer]") {
  const auto rust = Pretokenizer::from_dialect("\\s", RegexDialect::kRust);
  const auto js = Pretokenizer::from_dialect("\\s", RegexDialect::kJavaScript);
  auto hits = [](const Pretokenizer& p, char32_t cp) {
    std::string s;
    append_utf8(s, cp);
    return p.split(s).size() == 1;
  };
  CHECK(hits(rust, 0x85));
  CHECK_FALSE(hits(js, 0x85));
  CHECK_FALSE(hits(rust, 0xFEFF));
  CHECK(hits(js, 0xFEFF));
  CHECK_FALSE(hits(rust, 0x180E));  // PCRE2's own \s would match it
  CHECK_FALSE(hits(js, 0x180E));
}

namespace {
// Reference merge: the textbook loop (find the lowest-ranked pair, leftmost, merge, repeat).
std::vector<TokenId> naive_bpe(const BpeRanks& ranks, std::string_view piece) {
  std::vector<std::string> parts;
  for (char c : piece) parts.emplace_back(1, c);
  while (parts.size() > 1) {
    TokenId best = INT32_MAX;
    size_t at = 0;
    for (size_t i = 0; i + 1 < parts.size(); ++i) {
      auto r = ranks.rank(parts[i] + parts[i + 1]);
      if (r && *r < best) {
        best = *r;
        at = i;
      }
    }
    if (best == INT32_MAX) break;
    parts[at] += parts[at + 1];
    parts.erase(parts.begin() + at + 1);
  }
  std::vector<TokenId> out;
  for (auto& p : parts) out.push_back(*ranks.rank(p));
  return out;
}
}  // namespace

TEST_CASE("BPE small and large merges equal the naive loop", "[tokenizer]") {
  // A vocabulary over a 3-letter alphabet with many overlapping merges, so ties and order matter.
  std::mt19937 rng(11);
  std::string corpus;
  for (int i = 0; i < 20000; ++i) corpus += "abc "[rng() % 4 == 3 ? 3 : rng() % 3];
  const BpeRanks ranks = train_bpe(corpus, Pretokenizer("[abc]+"), 400);
  for (int len : {1, 2, 3, 7, 50, 255, 256, 257, 300, 1000, 5000}) {
    for (int rep = 0; rep < 5; ++rep) {
      std::string piece;
      for (int i = 0; i < len; ++i) piece += "abc"[rng() % (rep == 0 ? 1 : 3)];
      std::vector<TokenId> got;
      ranks.encode_piece(piece, got);
      INFO("len " << len << " rep " << rep);
      CHECK(got == naive_bpe(ranks, piece));
    }
  }
}

TEST_CASE("tiktoken.model parsing", "[tokenizer]") {
  std::string model;
  for (int b = 0; b < 256; ++b)
    model += base64_encode(std::string(1, static_cast<char>(b))) + " " + std::to_string(b) + "\r\n";
  model += "\n" + base64_encode("ab") + " 256\n";
  const BpeRanks r = Tokenizer::parse_tiktoken_ranks(model, "t");
  CHECK(r.size() == 257);
  CHECK(r.rank("ab").value() == 256);
  CHECK_THROWS_AS(Tokenizer::parse_tiktoken_ranks(model + "YWI= 300\n", "t"), kl::Error);
  CHECK_THROWS_AS(Tokenizer::parse_tiktoken_ranks(model + "YWJj 256\n", "t"), kl::Error);
  CHECK_THROWS_AS(Tokenizer::parse_tiktoken_ranks(model + "YWJj x\n", "t"), kl::Error);
  CHECK_THROWS_AS(Tokenizer::parse_tiktoken_ranks(model + "!!!! 400\n", "t"), kl::Error);
  CHECK_THROWS_AS(Tokenizer::parse_tiktoken_ranks("", "t"), kl::Error);
}
