// Robustness: the tokenizer, the chat-template renderer, the detokenizer and the tool-call parser
// on 100,000 seeded random and mutated inputs: no crash, no hang, only kl::Error for bad input.
// (The ASan/UBSan CI build runs this too.)
#include <catch2/catch.hpp>

#include <random>

#include <nlohmann/json.hpp>

#include "engine/core/error.h"
#include "server/tokenizer/chat_template.h"
#include "server/tokenizer/detokenizer.h"
#include "server/tokenizer/tool_call_parser.h"
#include "server/tokenizer/utf8.h"
#include "tests/unit/tokenizer_corpus.h"
#include "tests/unit/tokenizer_test_util.h"

using namespace kl::tok;
using nlohmann::json;

namespace {

const char* const kFragments[] = {"<|im_end|>",
                                  "<|im_user|>",
                                  "<|tool_calls_section_begin|>",
                                  "<|tool_call_begin|>",
                                  "<|tool_call_argument_begin|>",
                                  "<|tool_call_end|>",
                                  "<|tool_calls_section_end|>",
                                  "functions.f:0",
                                  "{\"a\": 1}",
                                  "{",
                                  "}",
                                  "\"",
                                  "\\",
                                  " ",
                                  "\n",
                                  "\r\n",
                                  "'s",
                                  "世",
                                  "😀",
                                  "\xE4\xB8",
                                  "\xFF",
                                  "\x00",
                                  "<|",
                                  "|>",
                                  "123",
                                  "\u3000",
                                  "\u0301"};

std::string mutate(std::string s, std::mt19937_64& rng) {
  const int ops = 1 + rng() % 4;
  for (int k = 0; k < ops; ++k) {
    const size_t pos = s.empty() ? 0 : rng() % (s.size() + 1);
    switch (rng() % 4) {
      case 0:
        s.insert(pos, kFragments[rng() % (sizeof(kFragments) / sizeof(*kFragments))]);
        break;
      case 1:
        if (!s.empty()) s.erase(std::min(pos, s.size() - 1), 1 + rng() % 8);
        break;
      case 2:
        if (!s.empty()) s[std::min(pos, s.size() - 1)] = static_cast<char>(rng());
        break;
      default:
        s.insert(pos, 1, static_cast<char>(rng()));
        break;
    }
  }
  return s;
}

json random_json(std::mt19937_64& rng, int depth, const std::vector<std::string>& strings) {
  switch (depth > 3 ? rng() % 4 : rng() % 7) {
    case 0:
      return nullptr;
    case 1:
      return static_cast<int64_t>(rng() % 1000) - 500;
    case 2:
      return strings[rng() % strings.size()];
    case 3:
      return rng() % 2 == 0;
    case 4: {
      json a = json::array();
      for (int i = rng() % 4; i > 0; --i) a.push_back(random_json(rng, depth + 1, strings));
      return a;
    }
    default: {
      static const char* kKeys[] = {"role",     "content",   "name", "tool_calls", "tool_call_id",
                                    "function", "arguments", "id",   "type",       "text"};
      json o = json::object();
      for (int i = rng() % 5; i > 0; --i)
        o[kKeys[rng() % 10]] = random_json(rng, depth + 1, strings);
      return o;
    }
  }
}

}  // namespace

TEST_CASE("100,000 random and mutated inputs", "[tokenizer][robustness]") {
  const auto tok = kl::test::small_kimi_tokenizer();
  std::vector<std::string> seeds;
  for (const auto& c : kl::test::tokenizer_corpus()) seeds.push_back(c.text.substr(0, 300));
  seeds.push_back(
      "ok<|tool_calls_section_begin|><|tool_call_begin|>functions.f:0<|tool_call_argument_begin|>"
      "{\"x\": [1, 2]}<|tool_call_end|><|tool_calls_section_end|>");
  std::mt19937_64 rng(1234);
  size_t errors = 0, tokens = 0;
  const int kIters = 100000;
  for (int it = 0; it < kIters; ++it) {
    const std::string input = mutate(seeds[rng() % seeds.size()], rng);
    switch (it % 4) {
      case 0: {  // tokenizer: encode (rejects invalid UTF-8 with kl::Error), decode round trip
        try {
          const auto ids = tok->encode(input, it % 8 == 0);
          tokens += ids.size();
          REQUIRE(tok->decode(ids) == input);
        } catch (const kl::Error&) {
          ++errors;
          REQUIRE_FALSE(is_valid_utf8(input));
        }
        break;
      }
      case 1: {  // tool-call parser, whole and streamed
        const auto r = parse_kimi_tool_calls(input);
        if (r.calls.empty()) REQUIRE(r.content == input);
        KimiToolCallStreamParser p;
        for (size_t pos = 0; pos < input.size(); pos += 1 + rng() % 9) p.feed(input.substr(pos, 9));
        p.finish();
        break;
      }
      case 2: {  // detokenizer with stop strings over random ids (including out-of-range ones)
        DetokenizerOptions opt;
        opt.skip_special_tokens = rng() % 2;
        opt.stop = {input.substr(0, rng() % 4), "<|", "\xE4\xB8"};
        IncrementalDetokenizer d(*tok, opt);
        for (int k = rng() % 40; k > 0; --k) {
          const TokenId id = static_cast<TokenId>(rng() % (tok->vocab_size() + 10)) - 5;
          REQUIRE(is_valid_utf8(d.push(id).text));
        }
        REQUIRE(is_valid_utf8(d.finish().text));
        break;
      }
      default: {  // chat template over random JSON shaped like messages
        const std::vector<std::string> strings = {input,  "user", "assistant",
                                                  "tool", "text", "system"};
        json messages = json::array();
        for (int k = rng() % 4; k > 0; --k) messages.push_back(random_json(rng, 1, strings));
        const json tools = rng() % 3 == 0 ? random_json(rng, 2, strings) : json();
        try {
          const auto r = render_chat(messages, tools, *tok, {rng() % 2 == 0});
          tokens += r.ids.size();
        } catch (const kl::Error&) {
          ++errors;
        }
        break;
      }
    }
  }
  CHECK(tokens > 0);
  INFO("rejected inputs: " << errors);
  CHECK(errors < static_cast<size_t>(kIters));
}
