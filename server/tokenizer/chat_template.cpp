// Native Kimi chat-template renderer and template fingerprints (see chat_template.h).
#include "server/tokenizer/chat_template.h"

#include "engine/core/error.h"
#include "engine/core/log.h"
#include "server/tokenizer/base64_sha256.h"
#include "server/tokenizer/json_text.h"

namespace kl::tok {

namespace {

using nlohmann::json;

class SegmentWriter {
 public:
  void control(const char* t) { out_.push_back({true, t}); }
  void text(std::string_view t) {
    if (t.empty()) return;
    if (!out_.empty() && !out_.back().control) {
      out_.back().text += t;
    } else {
      out_.push_back({false, std::string(t)});
    }
  }
  std::vector<ChatSegment> take() { return std::move(out_); }

 private:
  std::vector<ChatSegment> out_;
};

// The content of message `i` as text: a string, a list of text parts, or null/absent.
std::string content_text(const json& msg, size_t i) {
  const auto it = msg.find("content");
  if (it == msg.end() || it->is_null()) return {};
  if (it->is_string()) return it->get<std::string>();
  if (!it->is_array()) fail("messages[{}].content must be a string, a list of parts or null", i);
  std::string out;
  for (size_t k = 0; k < it->size(); ++k) {
    const json& part = (*it)[k];
    if (!part.is_object()) fail("messages[{}].content[{}] must be an object", i, k);
    const auto type = part.find("type");
    if (type != part.end() && (!type->is_string() || type->get<std::string>() != "text"))
      fail("messages[{}].content[{}]: only text parts are supported by this model", i, k);
    const auto text = part.find("text");
    if (text == part.end() || !text->is_string())
      fail("messages[{}].content[{}] has no string 'text'", i, k);
    out += text->get<std::string>();
  }
  return out;
}

void render_tool_calls(const json& calls, size_t i, size_t& call_counter, SegmentWriter& w) {
  if (!calls.is_array()) fail("messages[{}].tool_calls must be a list", i);
  w.control("<|tool_calls_section_begin|>");
  for (size_t k = 0; k < calls.size(); ++k) {
    const json& call = calls[k];
    if (!call.is_object()) fail("messages[{}].tool_calls[{}] must be an object", i, k);
    const auto fn = call.find("function");
    if (fn == call.end() || !fn->is_object())
      fail("messages[{}].tool_calls[{}] has no 'function' object", i, k);
    std::string id;
    if (const auto it = call.find("id"); it != call.end() && it->is_string())
      id = it->get<std::string>();
    if (id.empty()) {
      const auto name = fn->find("name");
      if (name == fn->end() || !name->is_string())
        fail("messages[{}].tool_calls[{}] has neither an id nor a function name", i, k);
      id = "functions." + name->get<std::string>() + ":" + std::to_string(call_counter);
    }
    ++call_counter;
    w.control("<|tool_call_begin|>");
    w.text(id);
    w.control("<|tool_call_argument_begin|>");
    const auto args = fn->find("arguments");
    if (args != fn->end())
      w.text(args->is_string() ? args->get<std::string>() : python_json_dumps(*args));
    w.control("<|tool_call_end|>");
  }
  w.control("<|tool_calls_section_end|>");
}

}  // namespace

std::vector<ChatSegment> render_chat_segments(const json& messages, const json& tools,
                                              const ChatRenderOptions& options) {
  if (!messages.is_array()) fail("messages must be a list");
  if (!tools.is_null() && !tools.is_array()) fail("tools must be a list");
  SegmentWriter w;
  if (tools.is_array() && !tools.empty()) {
    w.control("<|im_system|>");
    w.text("tool_declare");
    w.control("<|im_middle|>");
    w.text(python_json_dumps(tools));
    w.control("<|im_end|>");
  }
  size_t call_counter = 0;
  for (size_t i = 0; i < messages.size(); ++i) {
    const json& m = messages[i];
    if (!m.is_object()) fail("messages[{}] must be an object", i);
    const auto role_it = m.find("role");
    if (role_it == m.end() || !role_it->is_string()) fail("messages[{}].role must be a string", i);
    const std::string role = role_it->get<std::string>();
    std::string name;
    if (const auto it = m.find("name"); it != m.end() && !it->is_null()) {
      if (!it->is_string()) fail("messages[{}].name must be a string", i);
      name = it->get<std::string>();
    }
    if (role == "user") {
      w.control("<|im_user|>");
    } else if (role == "assistant") {
      w.control("<|im_assistant|>");
    } else {
      w.control("<|im_system|>");
    }
    w.text(name.empty() ? role : name);
    w.control("<|im_middle|>");
    const auto calls = m.find("tool_calls");
    const bool has_calls = role == "assistant" && calls != m.end() && !calls->is_null() &&
                           !(calls->is_array() && calls->empty());
    if (has_calls) {
      w.text(content_text(m, i));
      render_tool_calls(*calls, i, call_counter, w);
    } else if (role == "tool") {
      std::string id;
      if (const auto it = m.find("tool_call_id"); it != m.end() && !it->is_null()) {
        if (!it->is_string()) fail("messages[{}].tool_call_id must be a string", i);
        id = it->get<std::string>();
      }
      w.text("## Return of " + id + "\n" + content_text(m, i));
    } else {
      w.text(content_text(m, i));
    }
    w.control("<|im_end|>");
  }
  if (options.add_generation_prompt) {
    w.control("<|im_assistant|>");
    w.text("assistant");
    w.control("<|im_middle|>");
  }
  return w.take();
}

std::string chat_segments_to_string(const std::vector<ChatSegment>& segments) {
  std::string out;
  for (const auto& s : segments) out += s.text;
  return out;
}

std::vector<TokenId> chat_segments_to_ids(const std::vector<ChatSegment>& segments,
                                          const Tokenizer& tok) {
  std::vector<TokenId> ids;
  for (const auto& s : segments) {
    if (s.control) {
      const auto id = tok.special_id(s.text);
      if (!id) fail("chat template: the tokenizer has no control token {}", s.text);
      ids.push_back(*id);
    } else {
      tok.encode_ordinary(s.text, ids);
    }
  }
  return ids;
}

RenderedChat render_chat(const json& messages, const json& tools, const Tokenizer& tok,
                         const ChatRenderOptions& options) {
  const auto segs = render_chat_segments(messages, tools, options);
  return {chat_segments_to_ids(segs, tok), chat_segments_to_string(segs)};
}

// Jinja twin of render_chat_segments (same output on the inputs the renderer accepts).
const std::string_view kBuiltinKimiChatTemplate =
    "{%- if tools -%}<|im_system|>tool_declare<|im_middle|>{{ tools | tojson }}<|im_end|>"
    "{%- endif -%}"
    "{%- set ns = namespace(calls=0) -%}"
    "{%- for message in messages -%}"
    "{%- set role_name = message.get('name') or message['role'] -%}"
    "{%- if message['role'] == 'user' -%}<|im_user|>"
    "{%- elif message['role'] == 'assistant' -%}<|im_assistant|>"
    "{%- else -%}<|im_system|>{%- endif -%}"
    "{{ role_name }}<|im_middle|>"
    "{%- set c = message.get('content') -%}"
    "{%- if c is string -%}{%- set text = c -%}"
    "{%- elif c is not none -%}{%- set text = c | map(attribute='text') | join('') -%}"
    "{%- else -%}{%- set text = '' -%}{%- endif -%}"
    "{%- if message['role'] == 'assistant' and message.get('tool_calls') -%}"
    "{{ text }}<|tool_calls_section_begin|>"
    "{%- for tc in message['tool_calls'] -%}"
    "<|tool_call_begin|>{{ tc.get('id') or ('functions.' ~ tc['function']['name'] ~ ':' ~ "
    "ns.calls) }}"
    "<|tool_call_argument_begin|>"
    "{%- if tc['function']['arguments'] is string -%}{{ tc['function']['arguments'] }}"
    "{%- else -%}{{ tc['function']['arguments'] | tojson }}{%- endif -%}"
    "<|tool_call_end|>{%- set ns.calls = ns.calls + 1 -%}"
    "{%- endfor -%}<|tool_calls_section_end|>"
    "{%- elif message['role'] == 'tool' -%}## Return of {{ message.get('tool_call_id') or '' "
    "}}\n{{ text }}"
    "{%- else -%}{{ text }}{%- endif -%}"
    "<|im_end|>"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}<|im_assistant|>assistant<|im_middle|>{%- endif -%}";

std::optional<std::string> known_chat_template(const std::string& sha256) {
  // (sha256, description). The real Kimi-Linear-48B-A3B-Instruct template could not be read when
  // this was written (spec §9): add its hash here once it has been compared with the renderer.
  static const std::vector<std::pair<std::string, std::string>> kKnown = {
      {sha256_hex(kBuiltinKimiChatTemplate), "klserve built-in Kimi template"},
  };
  for (const auto& [h, name] : kKnown)
    if (h == sha256) return name;
  return std::nullopt;
}

ChatTemplateInfo identify_chat_template(const std::optional<std::string>& template_text) {
  ChatTemplateInfo info;
  if (!template_text) return info;
  info.sha256 = sha256_hex(*template_text);
  info.name = known_chat_template(info.sha256);
  return info;
}

void log_chat_template(const ChatTemplateInfo& info) {
  auto log = kl::logger("server");
  if (info.sha256.empty()) {
    log->info("chat template: none in the checkpoint; using the built-in Kimi renderer");
  } else if (info.name) {
    log->info("chat template: sha256 {} is known ({}); rendering natively", info.sha256,
              *info.name);
  } else {
    log->warn("chat template: sha256 {} is not a known template; using the built-in Kimi renderer",
              info.sha256);
  }
}

}  // namespace kl::tok
