// The Kimi chat format rendered natively (spec §6.2): messages and tools in OpenAI shape become a
// list of segments (control tokens and plain text); control tokens go to ids directly and text is
// encoded with special tokens disabled, so message content can never inject a turn marker.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "server/tokenizer/tokenizer.h"

namespace kl::tok {

struct ChatSegment {
  bool control = false;  // true: `text` is a control token's text (e.g. "<|im_end|>")
  std::string text;
};

struct RenderedChat {
  std::vector<TokenId> ids;
  std::string text;  // debug / prompt-echo form: control tokens spelled out in place
};

struct ChatRenderOptions {
  bool add_generation_prompt = true;
};

// Renders the conversation. Rules (spec §6.2 and the Kimi-K2 family convention):
//  - no BOS, no separators, no default system turn;
//  - tools non-empty: first `<|im_system|>tool_declare<|im_middle|>` + tools as Python-style JSON
//    with keys deep-sorted + `<|im_end|>`;
//  - each message: role marker (`<|im_user|>` user, `<|im_assistant|>` assistant, `<|im_system|>`
//    anything else) + (`name` if non-empty, else the role) + `<|im_middle|>` + body + `<|im_end|>`;
//  - body: content (a string, or the concatenated `text` of a list of text parts; null/absent is
//    empty); an assistant with tool_calls appends `<|tool_calls_section_begin|>`, per call
//    `<|tool_call_begin|>` + id + `<|tool_call_argument_begin|>` + arguments (a string verbatim,
//    anything else as JSON) + `<|tool_call_end|>`, then `<|tool_calls_section_end|>`; a call
//    without an id gets Kimi's `functions.{name}:{n}` with n counting calls in the conversation;
//  - role "tool": `## Return of ` + tool_call_id + "\n" + content;
//  - add_generation_prompt: `<|im_assistant|>assistant<|im_middle|>`.
// Throws kl::Error naming the offending field for malformed input (messages not an array, a
// message without a string role, content of a wrong type, a non-text content part, ...).
std::vector<ChatSegment> render_chat_segments(const nlohmann::json& messages,
                                              const nlohmann::json& tools,
                                              const ChatRenderOptions& options = {});

// Segments as one string (the debug form, equal to what HF's template would print).
std::string chat_segments_to_string(const std::vector<ChatSegment>& segments);

// Segments as ids: control tokens by id (kl::Error if the tokenizer lacks one), adjacent text
// segments joined and encoded as ordinary text, as HF encodes the text between two specials.
std::vector<TokenId> chat_segments_to_ids(const std::vector<ChatSegment>& segments,
                                          const Tokenizer& tok);

RenderedChat render_chat(const nlohmann::json& messages, const nlohmann::json& tools,
                         const Tokenizer& tok, const ChatRenderOptions& options = {});

// --- Template fingerprints -------------------------------------------------------------------

// A Jinja template equivalent to the native renderer; the project's own tokenizers (the embedded
// default model) ship it as their chat_template, so it is a known template by construction.
extern const std::string_view kBuiltinKimiChatTemplate;

struct ChatTemplateInfo {
  std::string sha256;               // empty when the checkpoint has no template
  std::optional<std::string> name;  // set when the hash is a known one
};

// Known chat_template hashes (sha256 of the template text) and what they are. Extend this table
// when a checkpoint's template has been checked against the native renderer.
std::optional<std::string> known_chat_template(const std::string& sha256);
ChatTemplateInfo identify_chat_template(const std::optional<std::string>& template_text);

// Logs (logger "server") whether the template is known; with an unknown or missing one it says
// that the built-in Kimi renderer is used anyway.
void log_chat_template(const ChatTemplateInfo& info);

}  // namespace kl::tok
