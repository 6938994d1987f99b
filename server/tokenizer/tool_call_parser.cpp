// Kimi tool-call parsers (see tool_call_parser.h).
#include "server/tokenizer/tool_call_parser.h"

#include <nlohmann/json.hpp>

namespace kl::tok {

namespace {

using M = KimiToolMarkers;
constexpr size_t kMaxHeader = 512;  // a longer header is not a tool call

bool is_ws(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_ws(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_ws(s.back())) s.remove_suffix(1);
  return s;
}

// Longest suffix of `s` that is a proper prefix of `marker` (what must wait for more text).
size_t partial_marker_suffix(std::string_view s, std::string_view marker) {
  for (size_t k = std::min(s.size(), marker.size() - 1); k > 0; --k)
    if (s.substr(s.size() - k) == marker.substr(0, k)) return k;
  return 0;
}

bool starts_with(std::string_view s, std::string_view p) {
  return s.substr(0, p.size()) == p;
}

}  // namespace

bool parse_tool_call_header(std::string_view header, std::string* name) {
  header = trim(header);
  if (header.empty() || header.size() > kMaxHeader) return false;
  const size_t colon = header.rfind(':');
  if (colon == std::string_view::npos || colon + 1 == header.size()) return false;
  for (char c : header.substr(colon + 1))
    if (c < '0' || c > '9') return false;
  const std::string_view path = header.substr(0, colon);
  const size_t dot = path.rfind('.');
  const std::string_view n = dot == std::string_view::npos ? path : path.substr(dot + 1);
  if (n.empty()) return false;
  for (char c : path) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7F || is_ws(c) || c == '<' || c == '>' || c == '|') return false;
  }
  if (name) *name = std::string(n);
  return true;
}

ToolCallParseResult parse_kimi_tool_calls(std::string_view text) {
  ToolCallParseResult plain{std::string(text), {}};
  const size_t sb = text.find(M::kSectionBegin);
  if (sb == std::string_view::npos) return plain;
  ToolCallParseResult r;
  r.content = std::string(text.substr(0, sb));
  std::string_view rest = text.substr(sb + M::kSectionBegin.size());
  while (true) {
    const size_t nw = rest.find_first_not_of(" \t\r\n");
    rest = nw == std::string_view::npos ? std::string_view{} : rest.substr(nw);
    if (rest.empty()) break;  // unterminated section: accepted if every call was complete
    if (starts_with(rest, M::kSectionEnd)) {
      r.content += std::string(rest.substr(M::kSectionEnd.size()));
      break;
    }
    if (!starts_with(rest, M::kCallBegin)) return plain;
    rest.remove_prefix(M::kCallBegin.size());
    const size_t ab = rest.find(M::kArgumentBegin);
    if (ab == std::string_view::npos) return plain;
    ParsedToolCall call;
    call.id = std::string(trim(rest.substr(0, ab)));
    if (!parse_tool_call_header(call.id, &call.name)) return plain;
    rest.remove_prefix(ab + M::kArgumentBegin.size());
    const size_t ce = rest.find(M::kCallEnd);
    if (ce == std::string_view::npos) return plain;
    call.arguments = std::string(trim(rest.substr(0, ce)));
    if (!nlohmann::json::accept(call.arguments)) return plain;
    rest.remove_prefix(ce + M::kCallEnd.size());
    r.calls.push_back(std::move(call));
  }
  // A section without calls is not a tool call: keep the text as it is.
  return r.calls.empty() ? plain : r;
}

void KimiToolCallStreamParser::content(std::vector<ToolCallEvent>& out, std::string text) {
  if (text.empty()) return;
  if (!out.empty() && out.back().kind == ToolCallEvent::Kind::kContent) {
    out.back().text += text;
  } else {
    ToolCallEvent e;
    e.text = std::move(text);
    out.push_back(std::move(e));
  }
}

void KimiToolCallStreamParser::fall_back(std::vector<ToolCallEvent>& out) {
  // Before any call was announced the section's raw text is still ours to give back as content;
  // after one, only what follows can be.
  if (num_calls_ == 0) content(out, std::move(raw_section_));
  raw_section_.clear();
  content(out, std::move(buf_));
  buf_.clear();
  state_ = State::kPassthrough;
}

std::vector<ToolCallEvent> KimiToolCallStreamParser::feed(std::string_view delta) {
  std::vector<ToolCallEvent> out;
  buf_ += delta;
  run(out, false);
  return out;
}

std::vector<ToolCallEvent> KimiToolCallStreamParser::finish() {
  std::vector<ToolCallEvent> out;
  run(out, true);
  switch (state_) {
    case State::kText:
    case State::kAfter:
    case State::kPassthrough:
      content(out, std::move(buf_));
      break;
    case State::kSection:
      if (num_calls_ == 0) {
        fall_back(out);
      } else if (!trim(buf_).empty()) {
        content(out, std::move(buf_));
      }
      break;
    case State::kHeader:
      if (num_calls_ == 0) fall_back(out);  // else: a cut-off header is dropped
      break;
    case State::kArgs:
      if (!buf_.empty()) {
        ToolCallEvent e;
        e.kind = ToolCallEvent::Kind::kArguments;
        e.index = num_calls_ - 1;
        e.text = std::move(buf_);
        out.push_back(std::move(e));
      }
      truncated_ = true;
      break;
  }
  buf_.clear();
  return out;
}

void KimiToolCallStreamParser::run(std::vector<ToolCallEvent>& out, bool final) {
  while (true) {
    switch (state_) {
      case State::kText: {
        const size_t sb = buf_.find(M::kSectionBegin);
        if (sb != std::string::npos) {
          content(out, buf_.substr(0, sb));
          raw_section_ = std::string(M::kSectionBegin);
          buf_.erase(0, sb + M::kSectionBegin.size());
          state_ = State::kSection;
          continue;
        }
        const size_t keep = final ? 0 : partial_marker_suffix(buf_, M::kSectionBegin);
        content(out, buf_.substr(0, buf_.size() - keep));
        buf_.erase(0, buf_.size() - keep);
        return;
      }
      case State::kSection: {
        const size_t ws = buf_.find_first_not_of(" \t\r\n");
        raw_section_ += buf_.substr(0, ws == std::string::npos ? buf_.size() : ws);
        buf_.erase(0, ws == std::string::npos ? buf_.size() : ws);
        if (buf_.empty()) return;
        if (starts_with(buf_, M::kCallBegin)) {
          raw_section_ += M::kCallBegin;
          buf_.erase(0, M::kCallBegin.size());
          state_ = State::kHeader;
          continue;
        }
        if (starts_with(buf_, M::kSectionEnd)) {
          buf_.erase(0, M::kSectionEnd.size());
          raw_section_.clear();
          state_ = State::kAfter;
          continue;
        }
        const bool maybe = starts_with(M::kCallBegin, buf_) || starts_with(M::kSectionEnd, buf_);
        if (maybe && !final) return;
        fall_back(out);
        continue;
      }
      case State::kHeader: {
        const size_t ab = buf_.find(M::kArgumentBegin);
        if (ab == std::string::npos) {
          if (buf_.size() > kMaxHeader + M::kArgumentBegin.size()) {
            fall_back(out);
            continue;
          }
          return;
        }
        std::string name;
        const std::string header(trim(std::string_view(buf_).substr(0, ab)));
        if (!parse_tool_call_header(header, &name)) {
          fall_back(out);
          continue;
        }
        ToolCallEvent e;
        e.kind = ToolCallEvent::Kind::kCallBegin;
        e.index = num_calls_++;
        e.id = header;
        e.name = std::move(name);
        out.push_back(std::move(e));
        buf_.erase(0, ab + M::kArgumentBegin.size());
        state_ = State::kArgs;
        continue;
      }
      case State::kArgs: {
        const size_t ce = buf_.find(M::kCallEnd);
        const size_t n = ce != std::string::npos
                             ? ce
                             : buf_.size() - (final ? 0 : partial_marker_suffix(buf_, M::kCallEnd));
        if (n > 0) {
          ToolCallEvent e;
          e.kind = ToolCallEvent::Kind::kArguments;
          e.index = num_calls_ - 1;
          e.text = buf_.substr(0, n);
          out.push_back(std::move(e));
        }
        if (ce == std::string::npos) {
          buf_.erase(0, n);
          return;
        }
        buf_.erase(0, ce + M::kCallEnd.size());
        state_ = State::kSection;
        continue;
      }
      case State::kAfter:
      case State::kPassthrough:
        content(out, std::move(buf_));
        buf_.clear();
        return;
    }
  }
}

}  // namespace kl::tok
