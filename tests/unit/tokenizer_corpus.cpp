// Corpus generation (see tokenizer_corpus.h). Random choices use raw mt19937_64 output reduced
// with %, never std::uniform_*_distribution, whose results differ between standard libraries.
#include "tests/unit/tokenizer_corpus.h"

#include <random>

#include "server/tokenizer/pretokenizer.h"
#include "server/tokenizer/utf8.h"

namespace kl::test {

namespace {

const char* const kEnglish =
    "The engine keeps one progress counter per sequence, so prefill, chunked prefill and decode "
    "are the same loop under a per-step token budget. It's simple, and we've found that it "
    "doesn't hide bugs: when a request is cancelled, its pages and state blocks are freed "
    "exactly once. Don't panic if the log says \"N pages = T tokens\"; that's expected!\n\n"
    "In 1789, the Estates-General met at Versailles. Within weeks the Third Estate had declared "
    "itself a National Assembly; by July, Parisians had stormed the Bastille. The Declaration "
    "of the Rights of Man (August 26, 1789) proclaimed liberty, property, security and "
    "resistance to oppression. HTTPServer, parseJSONString, XMLHttpRequest and iPhone are "
    "CamelCase words; McDonald's, O'Neil and y'all have apostrophes. I'M SHOUTING, they'RE "
    "here, we'VE won.\n";

const char* const kCode =
    "#include <vector>\n\nint main(int argc, char** argv) {\n  std::vector<int> v{1, 2, 3};\n"
    "  for (auto& x : v) x *= 2;  // double\n  return v.size() > 2 ? 0 : 1;\n}\n\n"
    "def fib(n: int) -> int:\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n"
    "    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a\n\n"
    "const f = async (url) => { const r = await fetch(url); return r.json(); };\n"
    "SELECT id, name FROM users WHERE email LIKE '%@example.com' ORDER BY id DESC;\n"
    "{\"key\": [1, 2.5, -3e10, true, null], \"nested\": {\"a\": \"b\\n\"}}\n"
    "if (x != nullptr && *x >= 0x1F) { y <<= 2; z = a->b[c]; }\t// tabs\tand\tsuch\n";

const char* const kChinese =
    "我们的模型很快。你好，世界！中文分词测试：「引用」和『书名』、顿号。"
    "人工智能正在改变我们的生活方式，从语音助手到自动驾驶汽车，技术的进步令人惊叹。"
    "北京是中国的首都，有着三千多年的历史。";
const char* const kJapanese =
    "日本語のテキストもあります。カタカナ、ひらがな、漢字が混ざっています。"
    "今日は良い天気ですね。東京タワーは1958年に完成しました。ｶﾀｶﾅ（半角）もテスト。";
const char* const kKorean =
    "안녕하세요, 세계! 한국어 텍스트도 포함되어 있습니다. 서울은 대한민국의 수도입니다. "
    "인공지능 기술이 빠르게 발전하고 있습니다.";
const char* const kArabic =
    "مرحبا بالعالم! هذه جملة باللغة العربية. الذكاء الاصطناعي يغير العالم. "
    "الأرقام العربية: ٠١٢٣٤٥٦٧٨٩ و ۱۲۳.";
const char* const kEmoji =
    "Family: 👨‍👩‍👧‍👦 couple: 👩‍❤️‍💋‍👨 flags: 🇯🇵🇫🇷🇺🇸 🏳️‍🌈 skin: "
    "👍🏽👋🏿 "
    "keycap: 1️⃣ #️⃣ "
    "technologist: 👩🏾‍💻 mixed😀text🎉here ❤️‍🔥 🧑‍🤝‍🧑";
const char* const kDigits =
    "1234567890 12 123 1234 12345 3.14159 -42 +7 1e10 0x1F 1,000,000 2024-06-07 "
    "000000000000000000000000000000 98765432109876543210 ½ ² ³ Ⅻ 𝟘𝟙𝟚 ٣٤٥";

// Code points in a few useful blocks, to make random strings that exercise the pattern's
// alternatives (letters with marks, apostrophes, digits, punctuation, whitespace).
const std::vector<std::pair<char32_t, char32_t>> kMixRanges = {
    {0x20, 0x7E},     {0x09, 0x0D},       {0xA0, 0x17F},      {0x300, 0x36F},    {0x391, 0x3C9},
    {0x410, 0x44F},   {0x5D0, 0x5EA},     {0x600, 0x6FF},     {0x900, 0x97F},    {0xE00, 0xE5B},
    {0x1100, 0x11FF}, {0x2000, 0x206F},   {0x3000, 0x30FF},   {0x4E00, 0x4FFF},  {0xAC00, 0xAD00},
    {0xFF00, 0xFFEF}, {0x1F300, 0x1F6FF}, {0x1F900, 0x1F9FF}, {0x20000, 0x20100}};

}  // namespace

std::vector<CorpusText> tokenizer_corpus(uint64_t seed) {
  std::vector<CorpusText> out;
  out.push_back({"english", kEnglish});
  out.push_back({"code", kCode});
  out.push_back({"chinese", kChinese});
  out.push_back({"japanese", kJapanese});
  out.push_back({"korean", kKorean});
  out.push_back({"arabic", kArabic});
  out.push_back({"emoji_zwj", kEmoji});
  out.push_back({"digits", kDigits});
  out.push_back({"crlf", "line one\r\nline two\r\n\r\n  indented\r\n\tTabbed\r\nend\r\n"});
  // Characters where engines' whitespace sets differ (PCRE2's own \s has U+180E; JS and Rust do
  // not) or that are invisible format characters.
  out.push_back({"unicode_spaces",
                 "a\u180Eb \u180E c\u200Bd\u2060e\u2028f\u2029g\u205Fh\u1680i\u202F"
                 "j\u00A0 k\x0B\x0Cl\u3000\u3000m \u180E\u180E  \x1C\x1D\x1E\x1F n"});
  out.push_back({"cr_only", "a\rb\r\rc \r d\n\r\n\r"});
  out.push_back({"spaces_300", "x" + std::string(300, ' ') + "y"});
  out.push_back({"spaces_1000", std::string(1000, ' ')});
  out.push_back({"tabs_400", "\t" + std::string(400, '\t') + "z"});
  out.push_back({"newlines_500", std::string(500, '\n') + "w"});
  out.push_back(
      {"mixed_ws", "a \t \n \u3000 \u00A0 \u2003\u2003 b" + std::string(260, ' ') + "\n"});
  {
    std::string ideographic;
    for (int i = 0; i < 300; ++i) ideographic += "\u3000";
    out.push_back({"ideographic_space_run", ideographic + "end"});
  }
  std::string all;
  for (const auto& c : out) all += c.text;
  out.push_back({"all_concatenated", all});

  std::mt19937_64 rng(seed);
  // Code points assigned in Unicode 14 according to PCRE2's own tables.
  const kl::tok::Pretokenizer assigned("\\P{Cn}");
  auto is_ok = [&](char32_t cp) {
    if (cp == 0xFEFF || cp == 0x85 || (cp >= 0xD800 && cp <= 0xDFFF) || cp == 0) return false;
    std::string s;
    kl::tok::append_utf8(s, cp);
    return assigned.split(s).size() == 1;
  };
  auto random_cp = [&](bool mixed) -> char32_t {
    while (true) {
      char32_t cp;
      if (mixed) {
        const auto& r = kMixRanges[rng() % kMixRanges.size()];
        cp = r.first + static_cast<char32_t>(rng() % (r.second - r.first + 1));
      } else {
        // Uniform over planes 0-3 and 14: where the assigned code points are.
        const uint64_t pick = rng() % 5;
        cp = static_cast<char32_t>((pick == 4 ? 0xE0000 : pick * 0x10000) + rng() % 0x10000);
      }
      if (is_ok(cp)) return cp;
    }
  };
  for (int i = 0; i < 150; ++i) {
    std::string s;
    const size_t len = 1 + rng() % 120;
    for (size_t j = 0; j < len; ++j) kl::tok::append_utf8(s, random_cp(/*mixed=*/i % 3 != 0));
    out.push_back({"random_" + std::to_string(i), s});
  }
  // Random splices of the fixed texts with random code points in between.
  for (int i = 0; i < 50; ++i) {
    std::string s;
    for (int k = 0; k < 4; ++k) {
      const std::string& src = out[rng() % 9].text;
      const size_t a = rng() % src.size();
      size_t b = a + rng() % 60;
      std::string part = src.substr(a, b - a);
      s += kl::tok::sanitize_utf8(part);  // cuts may split a character
      kl::tok::append_utf8(s, random_cp(true));
    }
    // sanitize_utf8 may introduce U+FFFD, which is fine (assigned, not whitespace).
    out.push_back({"splice_" + std::to_string(i), s});
  }
  return out;
}

std::string english_sample() {
  std::string s;
  for (int i = 0; i < 400; ++i) s += kEnglish;
  return s;
}

std::string chinese_sample() {
  std::string s;
  for (int i = 0; i < 800; ++i) s += kChinese;
  return s;
}

}  // namespace kl::test
