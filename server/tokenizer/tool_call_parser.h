// Kimi tool-call parsing, whole-text and streaming: the envelope
//   <|tool_calls_section_begin|> (<|tool_call_begin|>functions.NAME:IDX
//   <|tool_call_argument_begin|>{json}<|tool_call_end|>)* <|tool_calls_section_end|>
// becomes OpenAI tool calls (id = the Kimi header, type "function", name, arguments string).
// Malformed model output degrades to plain text; nothing throws.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace kl::tok {

struct KimiToolMarkers {
  static constexpr std::string_view kSectionBegin = "<|tool_calls_section_begin|>";
  static constexpr std::string_view kSectionEnd = "<|tool_calls_section_end|>";
  static constexpr std::string_view kCallBegin = "<|tool_call_begin|>";
  static constexpr std::string_view kArgumentBegin = "<|tool_call_argument_begin|>";
  static constexpr std::string_view kCallEnd = "<|tool_call_end|>";
};

struct ParsedToolCall {
  std::string id;         // Kimi's header, e.g. "functions.get_weather:0"
  std::string name;       // "get_weather": after the last '.' before ":IDX"
  std::string arguments;  // the JSON text as the model wrote it (trimmed)
};

struct ToolCallParseResult {
  std::string content;  // text outside the section (everything when no valid section)
  std::vector<ParsedToolCall> calls;
};

// Splits a Kimi tool-call header ("functions.NAME:IDX" or "NAME:IDX"); false if malformed.
bool parse_tool_call_header(std::string_view header, std::string* name);

// Non-streaming: a section counts only when every call in it is complete, has a valid header
// and JSON arguments, and nothing but whitespace stands between calls; otherwise the whole text
// is content.
ToolCallParseResult parse_kimi_tool_calls(std::string_view text);

struct ToolCallEvent {
  enum class Kind { kContent, kCallBegin, kArguments };
  Kind kind = Kind::kContent;
  int index = 0;     // tool-call index (kCallBegin / kArguments)
  std::string text;  // content, or an arguments fragment
  std::string id;    // kCallBegin only
  std::string name;  // kCallBegin only
};

// Streaming: feed text deltas (e.g. the detokenizer's), get content deltas and tool-call deltas
// in OpenAI streaming order (first the call's id and name, then argument fragments). A marker
// split across deltas is held back until it is decided. Once a call has been announced it cannot
// be taken back, so malformed text after it streams on as content.
class KimiToolCallStreamParser {
 public:
  std::vector<ToolCallEvent> feed(std::string_view delta);
  std::vector<ToolCallEvent> finish();
  int num_calls() const { return num_calls_; }
  // True when the last announced call was cut off (no <|tool_call_end|> before finish()).
  bool truncated_call() const { return truncated_; }

 private:
  enum class State { kText, kSection, kHeader, kArgs, kAfter, kPassthrough };
  void run(std::vector<ToolCallEvent>& out, bool final);
  void content(std::vector<ToolCallEvent>& out, std::string text);
  void fall_back(std::vector<ToolCallEvent>& out);

  State state_ = State::kText;
  std::string buf_;          // text not yet decided
  std::string raw_section_;  // everything consumed since the section began (for fall_back)
  int num_calls_ = 0;
  bool truncated_ = false;
};

}  // namespace kl::tok
