// GenerationSource: ChoiceUpdates -> SSE chunks or one JSON body (completions and chat shapes).
#include "server/openai/generation_source.h"

#include "server/openai/api_error.h"

namespace kl::openai {

using nlohmann::json;

GenerationSource::GenerationSource(ServingContext& ctx, SourceOptions options,
                                   std::vector<PromptRun> runs)
    : ctx_(ctx),
      opt_(std::move(options)),
      tt_(ctx.tokenizer.get(), opt_.return_tokens_as_token_ids),
      waker_(std::make_shared<Waker>()) {
  prompts_.reserve(runs.size());
  for (size_t p = 0; p < runs.size(); ++p) {
    // The callback holds the waker, not the source: the engine may call it after we are gone.
    runs[p].run->set_on_ready([w = waker_] {
      std::lock_guard<std::mutex> lock(w->mu);
      if (w->fn) w->fn();
    });
    prompts_.push_back({std::move(runs[p]), {}});
    for (int i = 0; i < opt_.n; ++i) {
      ChoiceState c;
      c.prompt = p;
      choices_.push_back(std::move(c));
    }
  }
}

GenerationSource::~GenerationSource() {
  {
    std::lock_guard<std::mutex> lock(waker_->mu);
    waker_->fn = nullptr;
  }
  std::lock_guard<std::mutex> lock(mu_);
  cancel_runs();
}

void GenerationSource::set_wakeup(std::function<void()> wake) {
  std::lock_guard<std::mutex> lock(waker_->mu);
  waker_->fn = std::move(wake);
}

void GenerationSource::cancel_runs() {
  for (PromptState& ps : prompts_)
    if (!ps.pr.run->done()) ps.pr.run->cancel();
}

void GenerationSource::cancel() {
  std::lock_guard<std::mutex> lock(mu_);
  cancelled_ = true;
  cancel_runs();
}

http::StreamSource::Chunk GenerationSource::pull(size_t max_bytes) {
  std::lock_guard<std::mutex> lock(mu_);
  if (cancelled_) return {"", true};
  if (!finished_) advance();
  const size_t avail = out_.size() - out_pos_;
  const size_t take = max_bytes == 0 ? avail : std::min(max_bytes, avail);
  Chunk c;
  c.status = error_status_;
  c.data = out_.substr(out_pos_, take);
  out_pos_ += take;
  if (out_pos_ == out_.size()) {
    out_.clear();
    out_pos_ = 0;
    c.done = finished_;
  }
  return c;
}

int64_t GenerationSource::num_prompt_tokens() const {
  int64_t n = 0;
  for (const PromptState& ps : prompts_) n += static_cast<int64_t>(ps.pr.prompt_ids.size());
  return n;
}

int64_t GenerationSource::num_generated_tokens() const {
  int64_t n = 0;
  for (const PromptState& ps : prompts_) n += ps.pr.run->num_generated_tokens();
  return n;
}

json GenerationSource::chunk_envelope(json choices) const {
  json j = {{"id", opt_.id},
            {"object", opt_.api == Api::kChat ? "chat.completion.chunk" : "text_completion"},
            {"created", opt_.created},
            {"model", opt_.model},
            {"choices", std::move(choices)}};
  if (opt_.include_usage)
    j["usage"] = opt_.continuous_usage ? usage_json(num_prompt_tokens(), num_generated_tokens())
                                       : json(nullptr);
  return j;
}

void GenerationSource::advance() {
  if (opt_.stream && opt_.api == Api::kChat && !roles_sent_) {
    // vLLM's first chunk per choice: the role, with empty content.
    for (size_t i = 0; i < choices_.size(); ++i) {
      json choice = {{"index", i},
                     {"delta", {{"role", "assistant"}, {"content", ""}}},
                     {"logprobs", nullptr},
                     {"finish_reason", nullptr}};
      json chunk = chunk_envelope(json::array({std::move(choice)}));
      if (opt_.return_token_ids)
        chunk["prompt_token_ids"] = prompts_[choices_[i].prompt].pr.prompt_ids;
      out_ += sse_event(chunk);
    }
    roles_sent_ = true;
  }
  bool all_done = true;
  for (size_t p = 0; p < prompts_.size() && error_.empty(); ++p) {
    GenerationRun& run = *prompts_[p].pr.run;
    if (run.done()) continue;
    for (ChoiceUpdate& u : run.poll()) {
      handle(p, u);
      if (!error_.empty()) break;
    }
    all_done = all_done && run.done();
  }
  if (!error_.empty()) {
    cancel_runs();
    const json err = error_json(500, error_);
    out_ += opt_.stream ? sse_event(err) + kSseDone : dump_json(err);
    // A stream has sent its 200 already; a whole-body response's head waits for this chunk.
    if (!opt_.stream) error_status_ = 500;
    finished_ = true;
    return;
  }
  if (all_done) finish();
}

void GenerationSource::handle(size_t prompt, ChoiceUpdate& u) {
  PromptState& ps = prompts_[prompt];
  for (auto& row : u.prompt_logprobs) ps.rows.push_back(std::move(row));
  if (!u.error.empty()) {
    error_ = u.error;
    return;
  }
  ChoiceState& c = choices_.at(prompt * static_cast<size_t>(opt_.n) + static_cast<size_t>(u.index));
  if (u.token_ids.empty() && u.text.empty() && u.tool_events.empty() && !u.finish_reason)
    return;  // prompt logprobs only
  std::string text;
  if (opt_.api == Api::kCompletions && opt_.echo && !c.started) {
    echo_prompt(c, ps);
    text = ps.pr.prompt_text;
  }
  text += u.text;
  c.text += text;
  add_tokens(c, u);
  for (tok::ToolCallEvent& ev : u.tool_events) {
    if (ev.kind == tok::ToolCallEvent::Kind::kCallBegin) {
      if (c.tool_calls.size() <= static_cast<size_t>(ev.index)) c.tool_calls.resize(ev.index + 1);
      c.tool_calls[ev.index].id = ev.id;
      c.tool_calls[ev.index].name = ev.name;
    } else if (ev.kind == tok::ToolCallEvent::Kind::kArguments &&
               static_cast<size_t>(ev.index) < c.tool_calls.size()) {
      c.tool_calls[ev.index].arguments += ev.text;
    }
  }
  if (u.finish_reason) c.finish_reason = u.finish_reason;
  if (opt_.stream) {
    if (opt_.api == Api::kChat)
      stream_chat(c, u);
    else
      stream_completion(c, u, text);
  }
  c.started = true;
}

void GenerationSource::echo_prompt(ChoiceState& c, const PromptState& ps) {
  if (opt_.logprobs < 0) return;
  const auto& ids = ps.pr.prompt_ids;
  for (size_t j = 0; j < ids.size(); ++j) {
    const size_t r = j - 1;
    if (j == 0 || r >= ps.rows.size() || ps.rows[r].empty()) {
      c.legacy.add_unscored(tt_, ids[j]);
    } else {
      const auto& row = ps.rows[r];
      c.legacy.add(tt_, ids[j], row[0].logprob, {row.begin() + 1, row.end()});
    }
  }
}

// Token ids and their logprobs (aligned by token: the run omits an entry whose logprob is
// exactly 0 with no alternatives, which is then reported as 0).
void GenerationSource::add_tokens(ChoiceState& c, const ChoiceUpdate& u) {
  c.token_ids.insert(c.token_ids.end(), u.token_ids.begin(), u.token_ids.end());
  if (opt_.logprobs < 0) return;
  static const std::vector<kernels::TokenLogprob> kNoTop;
  size_t j = 0;
  for (int32_t t : u.token_ids) {
    float lp = 0.f;
    const std::vector<kernels::TokenLogprob>* top = &kNoTop;
    if (j < u.logprobs.size() && u.logprobs[j].token == t) {
      lp = u.logprobs[j].logprob;
      top = &u.logprobs[j].top;
      ++j;
    }
    if (opt_.api == Api::kChat)
      c.chat_logprobs.push_back(chat_logprob_entry(tt_, t, lp, *top, opt_.logprobs));
    else
      c.legacy.add(tt_, t, lp, *top);
  }
}

void GenerationSource::stream_completion(ChoiceState& c, const ChoiceUpdate& u,
                                         const std::string& text) {
  const bool tokens_matter = opt_.logprobs >= 0 || opt_.return_token_ids;
  if (text.empty() && !u.finish_reason && (u.token_ids.empty() || !tokens_matter)) return;
  const size_t index = static_cast<size_t>(&c - choices_.data());
  json choice = {{"index", index},
                 {"text", text},
                 {"logprobs", opt_.logprobs >= 0 ? c.legacy.to_json() : json(nullptr)},
                 {"finish_reason", u.finish_reason ? json(*u.finish_reason) : json(nullptr)}};
  if (opt_.return_token_ids) {
    if (!c.started) choice["prompt_token_ids"] = prompts_[c.prompt].pr.prompt_ids;
    choice["token_ids"] = u.token_ids;
  }
  c.legacy.clear();
  out_ += sse_event(chunk_envelope(json::array({std::move(choice)})));
}

void GenerationSource::stream_chat(ChoiceState& c, const ChoiceUpdate& u) {
  json delta = json::object();
  if (!u.text.empty()) delta["content"] = u.text;
  json calls = json::array();
  for (const tok::ToolCallEvent& ev : u.tool_events) {
    if (ev.kind == tok::ToolCallEvent::Kind::kCallBegin) {
      calls.push_back({{"index", ev.index},
                       {"id", ev.id},
                       {"type", "function"},
                       {"function", {{"name", ev.name}, {"arguments", ""}}}});
    } else if (ev.kind == tok::ToolCallEvent::Kind::kArguments) {
      // Fragments of the call just announced join its entry (one entry per call per chunk).
      if (!calls.empty() && calls.back()["index"] == ev.index)
        calls.back()["function"]["arguments"] =
            calls.back()["function"]["arguments"].get<std::string>() + ev.text;
      else
        calls.push_back({{"index", ev.index}, {"function", {{"arguments", ev.text}}}});
    }
  }
  if (!calls.empty()) delta["tool_calls"] = std::move(calls);
  const bool tokens_matter = opt_.logprobs >= 0 || opt_.return_token_ids;
  if (delta.empty() && !u.finish_reason && (u.token_ids.empty() || !tokens_matter)) {
    c.chat_logprobs = json::array();
    return;
  }
  const size_t index = static_cast<size_t>(&c - choices_.data());
  json choice = {
      {"index", index},
      {"delta", std::move(delta)},
      {"logprobs", opt_.logprobs >= 0 ? json{{"content", c.chat_logprobs}} : json(nullptr)},
      {"finish_reason", u.finish_reason ? json(*u.finish_reason) : json(nullptr)}};
  if (opt_.return_token_ids) choice["token_ids"] = u.token_ids;
  c.chat_logprobs = json::array();
  out_ += sse_event(chunk_envelope(json::array({std::move(choice)})));
}

void GenerationSource::finish() {
  finished_ = true;
  if (opt_.stream) {
    if (opt_.include_usage) {
      json chunk = chunk_envelope(json::array());
      chunk["usage"] = usage_json(num_prompt_tokens(), num_generated_tokens());
      out_ += sse_event(chunk);
    }
    out_ += kSseDone;
    return;
  }
  out_ = dump_json(opt_.api == Api::kChat ? chat_body() : completion_body());
  out_pos_ = 0;
}

json GenerationSource::completion_body() const {
  json choices = json::array();
  for (size_t i = 0; i < choices_.size(); ++i) {
    const ChoiceState& c = choices_[i];
    const PromptState& ps = prompts_[c.prompt];
    json choice = {{"index", i},
                   {"text", c.text},
                   {"logprobs", opt_.logprobs >= 0 ? c.legacy.to_json() : json(nullptr)},
                   {"finish_reason", c.finish_reason ? json(*c.finish_reason) : json(nullptr)}};
    if (opt_.prompt_logprobs >= 0)
      choice["prompt_logprobs"] = prompt_logprobs_json(tt_, ps.pr.prompt_ids, ps.rows);
    // Without a tokenizer the text is empty: the token ids are the output.
    if (opt_.return_token_ids || !ctx_.tokenizer) {
      choice["prompt_token_ids"] = ps.pr.prompt_ids;
      choice["token_ids"] = c.token_ids;
    }
    choices.push_back(std::move(choice));
  }
  return {{"id", opt_.id},
          {"object", "text_completion"},
          {"created", opt_.created},
          {"model", opt_.model},
          {"choices", std::move(choices)},
          {"usage", usage_json(num_prompt_tokens(), num_generated_tokens())}};
}

json GenerationSource::chat_body() const {
  json choices = json::array();
  for (size_t i = 0; i < choices_.size(); ++i) {
    const ChoiceState& c = choices_[i];
    json message = {{"role", "assistant"}};
    message["content"] = c.text.empty() && !c.tool_calls.empty() ? json(nullptr) : json(c.text);
    if (!c.tool_calls.empty()) {
      json calls = json::array();
      for (const ToolCall& t : c.tool_calls)
        calls.push_back({{"id", t.id},
                         {"type", "function"},
                         {"function", {{"name", t.name}, {"arguments", t.arguments}}}});
      message["tool_calls"] = std::move(calls);
    }
    json choice = {
        {"index", i},
        {"message", std::move(message)},
        {"logprobs", opt_.logprobs >= 0 ? json{{"content", c.chat_logprobs}} : json(nullptr)},
        {"finish_reason", c.finish_reason ? json(*c.finish_reason) : json(nullptr)}};
    if (opt_.return_token_ids) choice["token_ids"] = c.token_ids;
    choices.push_back(std::move(choice));
  }
  json body = {{"id", opt_.id},
               {"object", "chat.completion"},
               {"created", opt_.created},
               {"model", opt_.model},
               {"choices", std::move(choices)},
               {"usage", usage_json(num_prompt_tokens(), num_generated_tokens())}};
  const PromptState& ps = prompts_.front();
  if (opt_.prompt_logprobs >= 0)
    body["prompt_logprobs"] = prompt_logprobs_json(tt_, ps.pr.prompt_ids, ps.rows);
  if (opt_.return_token_ids) body["prompt_token_ids"] = ps.pr.prompt_ids;
  return body;
}

}  // namespace kl::openai
