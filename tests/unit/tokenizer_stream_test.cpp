// Streaming output: the incremental detokenizer (UTF-8 boundaries, skip_special_tokens, stop
// strings across tokens) and the Kimi tool-call parser (whole text and streaming).
#include <catch2/catch.hpp>

#include <random>

#include "server/tokenizer/detokenizer.h"
#include "server/tokenizer/tool_call_parser.h"
#include "server/tokenizer/utf8.h"
#include "tests/unit/tokenizer_test_util.h"

using namespace kl::tok;

namespace {

// Byte tokens: the trained vocabularies give byte b the rank b.
std::vector<TokenId> byte_ids(std::string_view s) {
  std::vector<TokenId> ids;
  for (unsigned char c : s) ids.push_back(c);
  return ids;
}

struct Run {
  std::vector<std::string> deltas;
  std::string text;
  std::optional<size_t> stop;
};

Run detok(const Tokenizer& tok, const std::vector<TokenId>& ids, DetokenizerOptions opt) {
  IncrementalDetokenizer d(tok, std::move(opt));
  Run r;
  for (TokenId id : ids) {
    auto delta = d.push(id);
    if (delta.stop_index) r.stop = delta.stop_index;
    r.deltas.push_back(delta.text);
    r.text += delta.text;
  }
  auto last = d.finish();
  r.deltas.push_back(last.text);
  r.text += last.text;
  if (last.stop_index) r.stop = last.stop_index;
  CHECK(r.text == d.text());
  return r;
}

// Brute-force reference: cut at the stop occurrence that completes first (earliest end), and
// among those the one starting first.
std::pair<std::string, std::optional<size_t>> reference_stop(const std::string& text,
                                                             const std::vector<std::string>& stops,
                                                             bool include) {
  size_t best_end = std::string::npos, best_start = 0;
  std::optional<size_t> which;
  for (size_t k = 0; k < stops.size(); ++k) {
    if (stops[k].empty()) continue;
    const size_t p = text.find(stops[k]);
    if (p == std::string::npos) continue;
    const size_t e = p + stops[k].size();
    if (e < best_end || (e == best_end && p < best_start)) {
      best_end = e;
      best_start = p;
      which = k;
    }
  }
  if (!which) return {text, std::nullopt};
  return {text.substr(0, include ? best_end : best_start), which};
}

}  // namespace

TEST_CASE("detokenizer never splits a UTF-8 sequence", "[tokenizer][detok]") {
  const auto tok = kl::test::small_kimi_tokenizer();
  const std::string text = "é世😀a";
  const Run r = detok(*tok, byte_ids(text), {});
  CHECK(r.text == text);
  for (const auto& d : r.deltas) CHECK(is_valid_utf8(d));
  // é needs 2 bytes: nothing after the first, the whole character after the second.
  CHECK(r.deltas[0].empty());
  CHECK(r.deltas[1] == "é");
  CHECK(r.deltas[4] == "世");
  CHECK(r.deltas[8] == "😀");
}

TEST_CASE("detokenizer replaces invalid bytes and flushes a cut character", "[tokenizer][detok]") {
  const auto tok = kl::test::small_kimi_tokenizer();
  CHECK(detok(*tok, {'a', 0xFF, 'b'}, {}).text ==
        "a\xEF\xBF\xBD"
        "b");
  CHECK(detok(*tok, {'a', 0xE4, 0xB8}, {}).text == "a\xEF\xBF\xBD");  // cut off at the end
  CHECK(detok(*tok, {0xE4, 'x'}, {}).text ==
        "\xEF\xBF\xBD"
        "x");
}

TEST_CASE("detokenizer skip_special_tokens", "[tokenizer][detok]") {
  const auto tok = kl::test::small_kimi_tokenizer();
  const auto c = KimiControlIds::resolve(*tok);
  std::vector<TokenId> ids = byte_ids("hi");
  ids.push_back(c.tool_calls_section_begin);
  ids.push_back(c.im_end);
  CHECK(detok(*tok, ids, {true, {}, false}).text == "hi<|tool_calls_section_begin|>");
  CHECK(detok(*tok, ids, {false, {}, false}).text == "hi<|tool_calls_section_begin|><|im_end|>");
}

TEST_CASE("stop strings across token boundaries", "[tokenizer][detok]") {
  const auto tok = kl::test::small_kimi_tokenizer();
  DetokenizerOptions opt;
  opt.stop = {"world", "END"};
  // "wor" | "ld" arrive as separate tokens; nothing of "wor" may be emitted before it is decided.
  const Run r = detok(*tok, byte_ids("Hello world! more"), opt);
  CHECK(r.text == "Hello ");
  CHECK(r.stop == size_t{0});
  opt.include_stop_str_in_output = true;
  CHECK(detok(*tok, byte_ids("Hello world! more"), opt).text == "Hello world");
  // A held prefix that turns out not to be a stop is released.
  opt.include_stop_str_in_output = false;
  const Run r2 = detok(*tok, byte_ids("wor wo ENx"), opt);
  CHECK(r2.text == "wor wo ENx");
  CHECK_FALSE(r2.stop.has_value());
  // Multi-byte stop strings split inside a character.
  opt.stop = {"世界"};
  CHECK(detok(*tok, byte_ids("你好世界！"), opt).text == "你好");
}

TEST_CASE("stop strings: randomized against a brute-force reference", "[tokenizer][detok]") {
  const auto tok = kl::test::small_kimi_tokenizer();
  std::mt19937_64 rng(99);
  const std::string alphabet[] = {"a", "b", "c", " ", "é", "世", "😀", "\n"};
  for (int iter = 0; iter < 400; ++iter) {
    std::string text;
    const size_t n = rng() % 40;
    for (size_t i = 0; i < n; ++i) text += alphabet[rng() % 8];
    std::vector<std::string> stops;
    const size_t ns = rng() % 4;
    for (size_t k = 0; k < ns; ++k) {
      std::string s;
      const size_t len = 1 + rng() % 3;
      for (size_t i = 0; i < len; ++i) s += alphabet[rng() % 8];
      stops.push_back(s);
    }
    const bool include = rng() % 2;
    // Tokenize either as single bytes or with the real BPE (multi-byte tokens).
    const auto ids = rng() % 2 ? byte_ids(text) : tok->encode(text);
    const Run r = detok(*tok, ids, {true, stops, include});
    const auto [want, which] = reference_stop(text, stops, include);
    INFO("text '" << text << "' iter " << iter);
    CHECK(r.text == want);
    CHECK(r.stop.has_value() == which.has_value());
    if (r.stop && which) CHECK(stops[*r.stop] == stops[*which]);
    for (const auto& d : r.deltas) CHECK(is_valid_utf8(d));
  }
}

// ---- tool calls -------------------------------------------------------------------------------

namespace {
const std::string kTwoCalls =
    "Let me check.<|tool_calls_section_begin|>\n<|tool_call_begin|>functions.get_weather:0"
    "<|tool_call_argument_begin|>{\"city\": \"Tokyo\"}<|tool_call_end|>\n"
    "<|tool_call_begin|> functions.get_time:1 <|tool_call_argument_begin|>{}<|tool_call_end|>"
    "<|tool_calls_section_end|>";

// Runs the streaming parser over random splits of `text` and assembles the result.
ToolCallParseResult stream_parse(const std::string& text, std::mt19937_64& rng, bool* truncated) {
  KimiToolCallStreamParser p;
  ToolCallParseResult r;
  auto apply = [&](const std::vector<ToolCallEvent>& evs) {
    for (const auto& e : evs) {
      switch (e.kind) {
        case ToolCallEvent::Kind::kContent:
          r.content += e.text;
          break;
        case ToolCallEvent::Kind::kCallBegin:
          REQUIRE(e.index == static_cast<int>(r.calls.size()));
          r.calls.push_back({e.id, e.name, ""});
          break;
        case ToolCallEvent::Kind::kArguments:
          REQUIRE(e.index == static_cast<int>(r.calls.size()) - 1);
          r.calls.back().arguments += e.text;
          break;
      }
    }
  };
  size_t pos = 0;
  while (pos < text.size()) {
    const size_t n = 1 + rng() % 12;
    apply(p.feed(std::string_view(text).substr(pos, n)));
    pos += n;
  }
  apply(p.finish());
  if (truncated) *truncated = p.truncated_call();
  return r;
}
}  // namespace

TEST_CASE("tool calls: whole-text parse", "[tokenizer][tools]") {
  const auto r = parse_kimi_tool_calls(kTwoCalls);
  CHECK(r.content == "Let me check.");
  REQUIRE(r.calls.size() == 2);
  CHECK(r.calls[0].id == "functions.get_weather:0");
  CHECK(r.calls[0].name == "get_weather");
  CHECK(r.calls[0].arguments == "{\"city\": \"Tokyo\"}");
  CHECK(r.calls[1].id == "functions.get_time:1");
  CHECK(r.calls[1].name == "get_time");
  CHECK(r.calls[1].arguments == "{}");
  // No section end but every call complete (generation stopped at <|im_end|>): accepted.
  const std::string no_end = kTwoCalls.substr(0, kTwoCalls.find("<|tool_calls_section_end|>"));
  CHECK(parse_kimi_tool_calls(no_end).calls.size() == 2);
  CHECK(parse_kimi_tool_calls("plain text").calls.empty());
}

TEST_CASE("tool calls: malformed output falls back to plain text", "[tokenizer][tools]") {
  const std::string bad[] = {
      "x<|tool_calls_section_begin|><|tool_call_begin|>functions.f:0<|tool_call_argument_begin|>{"
      "bad json<|tool_call_end|>",
      "x<|tool_calls_section_begin|><|tool_call_begin|>functions.f:0<|tool_call_argument_begin|>{}",
      "x<|tool_calls_section_begin|><|tool_call_begin|>no "
      "index<|tool_call_argument_begin|>{}<|tool_call_end|>",
      "x<|tool_calls_section_begin|>junk<|tool_call_begin|>functions.f:0<|tool_call_argument_begin|"
      ">{}<|tool_call_end|>",
      "x<|tool_calls_section_begin|><|tool_calls_section_end|>",
      "x<|tool_calls_section_begin|>",
  };
  for (const auto& t : bad) {
    const auto r = parse_kimi_tool_calls(t);
    CHECK(r.calls.empty());
    CHECK(r.content == t);
  }
  CHECK_FALSE(parse_tool_call_header("functions.:0", nullptr));
  CHECK_FALSE(parse_tool_call_header("functions.f:x", nullptr));
  std::string name;
  CHECK(parse_tool_call_header("get_weather:3", &name));
  CHECK(name == "get_weather");
}

TEST_CASE("tool calls: streaming equals whole-text on any split", "[tokenizer][tools]") {
  std::mt19937_64 rng(5);
  const auto want = parse_kimi_tool_calls(kTwoCalls);
  for (int i = 0; i < 300; ++i) {
    bool truncated = true;
    const auto got = stream_parse(kTwoCalls, rng, &truncated);
    CHECK(got.content == want.content);
    REQUIRE(got.calls.size() == want.calls.size());
    for (size_t k = 0; k < got.calls.size(); ++k) {
      CHECK(got.calls[k].id == want.calls[k].id);
      CHECK(got.calls[k].name == want.calls[k].name);
      CHECK(got.calls[k].arguments == want.calls[k].arguments);
    }
    CHECK_FALSE(truncated);
  }
  // Text that only resembles a marker is released as content.
  const auto r = stream_parse("a <|tool_calls_sect b <|", rng, nullptr);
  CHECK(r.content == "a <|tool_calls_sect b <|");
  CHECK(r.calls.empty());
  // Malformed before any call was announced: everything comes back as content.
  const std::string junk = "x<|tool_calls_section_begin|>junk here";
  CHECK(stream_parse(junk, rng, nullptr).content == junk);
  // A call cut off by the token limit is reported as truncated.
  bool truncated = false;
  const auto cut = stream_parse(kTwoCalls.substr(0, kTwoCalls.find("Tokyo")), rng, &truncated);
  CHECK(truncated);
  REQUIRE(cut.calls.size() == 1);
  CHECK(cut.calls[0].arguments == "{\"city\": \"");
}
