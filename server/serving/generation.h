// GenerationRun: one request's outputs turned into per-choice updates for a front end, off the
// engine thread: incremental detokenization, stop strings (which end a choice and, once every
// choice has ended, cancel the request), Kimi tool-call parsing, logprobs, usage and the latency
// metrics. HTTP (SSE or one body) and gRPC both build their responses from these updates.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "server/serving/serving_context.h"
#include "server/tokenizer/detokenizer.h"
#include "server/tokenizer/tool_call_parser.h"

namespace kl {

struct GenerationOptions {
  std::vector<std::string> stop;  // stop strings
  bool include_stop_str_in_output = false;
  bool skip_special_tokens = true;
  bool parse_tool_calls = false;  // tools given and tool_choice is not "none"
  bool logprobs = false;          // the request asked for logprobs: one entry per new token
};

struct TokenLogprobs {
  int32_t token = -1;
  float logprob = 0.f;
  std::vector<kernels::TokenLogprob> top;
};

struct ChoiceUpdate {
  int index = 0;
  std::string text;                             // new content (UTF-8, never split mid-char)
  std::vector<tok::ToolCallEvent> tool_events;  // new tool-call events (parse_tool_calls)
  std::vector<int32_t> token_ids;               // new generated tokens
  std::vector<TokenLogprobs> logprobs;          // one per new token (when asked)
  std::vector<std::vector<kernels::TokenLogprob>> prompt_logprobs;  // once, at the start
  std::optional<std::string> finish_reason;  // "stop" | "length" | "tool_calls" | "abort"
  std::string error;                         // the engine failed this choice
};

class GenerationRun {
 public:
  GenerationRun(ServingContext& ctx, std::shared_ptr<RequestStream> stream, int n,
                int64_t num_prompt_tokens, GenerationOptions options);
  // Cancels the request if it is still running (a client that went away).
  ~GenerationRun();
  GenerationRun(const GenerationRun&) = delete;
  GenerationRun& operator=(const GenerationRun&) = delete;

  // Every update available now (never blocks).
  std::vector<ChoiceUpdate> poll();
  // Waits up to `timeout` for news, then poll().
  std::vector<ChoiceUpdate> wait(std::chrono::milliseconds timeout);
  bool done() const;  // every choice has finished
  void cancel();      // ends the request in the engine (its choices finish with "abort")

  int64_t request_id() const { return stream_->id(); }
  int64_t num_prompt_tokens() const { return num_prompt_tokens_; }
  int64_t num_generated_tokens() const;  // all choices
  // Runs `cb` (on the engine thread; keep it cheap) whenever outputs arrive.
  void set_on_ready(std::function<void()> cb) { stream_->set_on_ready(std::move(cb)); }

 private:
  struct Choice {
    std::unique_ptr<tok::IncrementalDetokenizer> detok;
    std::unique_ptr<tok::KimiToolCallStreamParser> tools;
    int num_tokens = 0;
    int num_tool_calls = 0;
    bool finished = false;
  };
  void apply(const RequestOutput& out, ChoiceUpdate& u);
  void finish_choice(Choice& c, ChoiceUpdate& u, const std::string& reason);
  void add_text(Choice& c, ChoiceUpdate& u, const std::string& text);

  ServingContext& ctx_;
  std::shared_ptr<RequestStream> stream_;
  const int64_t num_prompt_tokens_;
  const GenerationOptions options_;
  std::vector<Choice> choices_;
  int num_finished_ = 0;
  bool cancel_sent_ = false;
  std::chrono::steady_clock::time_point start_, last_token_;
  bool first_token_seen_ = false;
};

}  // namespace kl
