// libFuzzer target over the parser library (kl_tokenizer): encode/decode, chat-template
// rendering of arbitrary JSON, the tool-call parsers and the streaming detokenizer. Built and run
// by scripts/fuzz-tokenizer.sh with clang-14 (-fsanitize=fuzzer,address,undefined).
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "engine/core/error.h"
#include "server/tokenizer/chat_template.h"
#include "server/tokenizer/default_tokenizer.h"
#include "server/tokenizer/detokenizer.h"
#include "server/tokenizer/tool_call_parser.h"

namespace {
std::shared_ptr<const kl::tok::Tokenizer> g_tok;
}

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  using namespace kl::tok;
  g_tok =
      make_kimi_tokenizer(train_default_ranks(), kimi_default_specials(kDefaultNumRegularTokens));
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace kl::tok;
  if (size == 0) return 0;
  const std::string input(reinterpret_cast<const char*>(data) + 1, size - 1);
  try {
    switch (data[0] % 4) {
      case 0: {
        const auto ids = g_tok->encode(input, data[0] & 4);
        if (g_tok->decode(ids) != input) __builtin_trap();
        break;
      }
      case 1: {
        parse_kimi_tool_calls(input);
        KimiToolCallStreamParser p;
        for (size_t i = 0; i < input.size(); i += 7) p.feed(std::string_view(input).substr(i, 7));
        p.finish();
        break;
      }
      case 2: {
        const auto j = nlohmann::json::parse(input, nullptr, false);
        if (j.is_discarded()) break;
        const auto messages = j.is_object() && j.contains("messages") ? j["messages"] : j;
        const auto tools = j.is_object() && j.contains("tools") ? j["tools"] : nlohmann::json();
        render_chat(messages, tools, *g_tok, {(data[0] & 4) != 0});
        break;
      }
      default: {
        IncrementalDetokenizer d(*g_tok, {(data[0] & 4) != 0, {"\n\n", "<|", "é"}, false});
        for (size_t i = 0; i + 1 < input.size(); i += 2)
          d.push(static_cast<TokenId>((uint8_t(input[i]) << 8 | uint8_t(input[i + 1])) % 2400));
        d.finish();
        break;
      }
    }
  } catch (const kl::Error&) {
    // Rejected input (invalid UTF-8, malformed messages): the expected outcome, not a bug.
  }
  return 0;
}
