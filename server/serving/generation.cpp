// GenerationRun: RequestOutputs -> per-choice text, tool-call and logprob updates.
#include "server/serving/generation.h"

namespace kl {

GenerationRun::GenerationRun(ServingContext& ctx, std::shared_ptr<RequestStream> stream, int n,
                             int64_t num_prompt_tokens, GenerationOptions options)
    : ctx_(ctx),
      stream_(std::move(stream)),
      num_prompt_tokens_(num_prompt_tokens),
      options_(std::move(options)),
      choices_(static_cast<size_t>(n)),
      start_(std::chrono::steady_clock::now()) {
  for (Choice& c : choices_) {
    if (ctx_.tokenizer) {
      tok::DetokenizerOptions d;
      d.skip_special_tokens = options_.skip_special_tokens && !options_.parse_tool_calls;
      d.stop = options_.stop;
      d.include_stop_str_in_output = options_.include_stop_str_in_output;
      c.detok = std::make_unique<tok::IncrementalDetokenizer>(*ctx_.tokenizer, d);
    }
    if (options_.parse_tool_calls) c.tools = std::make_unique<tok::KimiToolCallStreamParser>();
  }
}

GenerationRun::~GenerationRun() {
  if (!stream_->finished()) cancel();
}

void GenerationRun::cancel() {
  if (cancel_sent_) return;
  cancel_sent_ = true;
  ctx_.engine.load()->cancel(stream_->id());
}

bool GenerationRun::done() const {
  return num_finished_ == static_cast<int>(choices_.size());
}

int64_t GenerationRun::num_generated_tokens() const {
  int64_t n = 0;
  for (const Choice& c : choices_) n += c.num_tokens;
  return n;
}

void GenerationRun::add_text(Choice& c, ChoiceUpdate& u, const std::string& text) {
  if (text.empty()) return;
  if (!c.tools) {
    u.text += text;
    return;
  }
  for (auto& ev : c.tools->feed(text)) {
    if (ev.kind == tok::ToolCallEvent::Kind::kContent) {
      u.text += ev.text;
    } else {
      if (ev.kind == tok::ToolCallEvent::Kind::kCallBegin) ++c.num_tool_calls;
      u.tool_events.push_back(std::move(ev));
    }
  }
}

void GenerationRun::finish_choice(Choice& c, ChoiceUpdate& u, const std::string& reason) {
  if (c.finished) return;
  if (c.detok) add_text(c, u, c.detok->finish().text);
  if (c.tools) {
    for (auto& ev : c.tools->finish()) {
      if (ev.kind == tok::ToolCallEvent::Kind::kContent)
        u.text += ev.text;
      else
        u.tool_events.push_back(std::move(ev));
    }
  }
  // A turn that ended normally after emitting tool calls is a tool-call turn (OpenAI's reason).
  u.finish_reason = (reason == "stop" && c.num_tool_calls > 0) ? "tool_calls" : reason;
  c.finished = true;
  ++num_finished_;
  if (done() && ctx_.metrics) {
    const double e2e =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    ctx_.metrics->on_request_done(e2e, num_prompt_tokens_, num_generated_tokens(),
                                  *u.finish_reason);
  }
  // Stop strings end choices on our side; once all have ended, stop the engine's work too.
  if (done() && !stream_->finished()) cancel();
}

void GenerationRun::apply(const RequestOutput& out, ChoiceUpdate& u) {
  Choice& c = choices_.at(out.index);
  u.index = out.index;
  u.prompt_logprobs = out.prompt_logprobs;
  if (c.finished) return;  // e.g. tokens after a stop string, or the abort we asked for
  if (out.token >= 0) {
    const auto now = std::chrono::steady_clock::now();
    if (ctx_.metrics) {
      if (!first_token_seen_)
        ctx_.metrics->on_time_to_first_token(std::chrono::duration<double>(now - start_).count());
      else
        ctx_.metrics->on_inter_token(std::chrono::duration<double>(now - last_token_).count());
    }
    first_token_seen_ = true;
    last_token_ = now;
    ++c.num_tokens;
    u.token_ids.push_back(out.token);
    if (options_.logprobs) u.logprobs.push_back({out.token, out.logprob, out.top_logprobs});
    // A stop token (EOS or stop_token_ids: the engine's only kStop) ends the text without its
    // own text unless include_stop_str_in_output, as vLLM does; otherwise "<|im_end|>" would
    // leak into content whenever specials are kept (tool parsing, skip_special_tokens false).
    const bool stop_token = out.finish == FinishReason::kStop;
    if (c.detok && (!stop_token || options_.include_stop_str_in_output)) {
      tok::DetokenizerDelta d = c.detok->push(out.token);
      add_text(c, u, d.text);
      if (d.stop_index) {
        finish_choice(c, u, "stop");
        return;
      }
    }
  }
  if (out.finish == FinishReason::kError) {
    u.error = out.error.empty() ? "the engine failed this request" : out.error;
    finish_choice(c, u, "error");
  } else if (out.finish != FinishReason::kNone) {
    finish_choice(c, u, finish_reason_name(out.finish));
  }
}

std::vector<ChoiceUpdate> GenerationRun::poll() {
  std::vector<ChoiceUpdate> updates;
  for (const RequestOutput& out : stream_->drain()) {
    ChoiceUpdate u;
    apply(out, u);
    // Merge consecutive updates of the same choice into one (fewer, larger stream chunks).
    if (!updates.empty() && updates.back().index == u.index && !updates.back().finish_reason &&
        u.prompt_logprobs.empty() && updates.back().error.empty()) {
      ChoiceUpdate& b = updates.back();
      b.text += u.text;
      for (auto& e : u.tool_events) b.tool_events.push_back(std::move(e));
      b.token_ids.insert(b.token_ids.end(), u.token_ids.begin(), u.token_ids.end());
      for (auto& l : u.logprobs) b.logprobs.push_back(std::move(l));
      b.finish_reason = u.finish_reason;
      b.error = u.error;
    } else {
      updates.push_back(std::move(u));
    }
  }
  return updates;
}

std::vector<ChoiceUpdate> GenerationRun::wait(std::chrono::milliseconds timeout) {
  if (auto first = stream_->next(timeout)) {
    ChoiceUpdate u;
    apply(*first, u);
    std::vector<ChoiceUpdate> rest = poll();
    rest.insert(rest.begin(), std::move(u));
    return rest;
  }
  return {};
}

}  // namespace kl
