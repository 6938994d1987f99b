// GenerationSource: the http::StreamSource behind every generation response. It drives one
// GenerationRun per prompt and turns their ChoiceUpdates into SSE chunks (serving.md §1.3) or,
// without streaming, into one JSON body released when every choice has finished, so that no
// I/O thread ever waits for the engine.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "server/http/http_types.h"
#include "server/openai/response_builder.h"
#include "server/serving/generation.h"

namespace kl::openai {

enum class Api : uint8_t { kCompletions, kChat };

struct SourceOptions {
  Api api = Api::kCompletions;
  bool stream = false;
  std::string id;  // "cmpl-..." / "chatcmpl-..."
  int64_t created = 0;
  std::string model;
  int n = 1;  // choices per prompt; choice index = prompt * n + sample
  bool include_usage = false;
  bool continuous_usage = false;
  bool return_token_ids = false;
  bool return_tokens_as_token_ids = false;
  bool echo = false;             // completions: the prompt leads each choice's text
  int32_t logprobs = -1;         // completions: legacy top-k; chat: top_logprobs (-1: none)
  int32_t prompt_logprobs = -1;  // >= 0: report vLLM's prompt_logprobs
};

// One submitted prompt.
struct PromptRun {
  std::unique_ptr<GenerationRun> run;
  std::vector<int32_t> prompt_ids;
  std::string prompt_text;  // for echo
};

class GenerationSource final : public http::StreamSource {
 public:
  GenerationSource(ServingContext& ctx, SourceOptions options, std::vector<PromptRun> runs);
  // Ends what still runs in the engine (a client that went away).
  ~GenerationSource() override;

  // `wake` is called from the engine thread (under a lock that the destructor also takes, so
  // never after destruction) whenever outputs arrive: it must be cheap and must not block. The
  // transport pulls once after set_wakeup and again after each wake-up.
  void set_wakeup(std::function<void()> wake) override;
  // max_bytes 0: no limit.
  Chunk pull(size_t max_bytes) override;
  void cancel() override;

 private:
  struct ToolCall {
    std::string id, name, arguments;
  };
  struct ChoiceState {
    size_t prompt = 0;
    bool started = false;  // completions: echo applied; both: first chunk sent
    std::string text;
    std::vector<int32_t> token_ids;
    LegacyLogprobs legacy;
    nlohmann::json chat_logprobs = nlohmann::json::array();
    std::vector<ToolCall> tool_calls;
    std::optional<std::string> finish_reason;
  };
  struct PromptState {
    PromptRun pr;
    std::vector<std::vector<kernels::TokenLogprob>> rows;  // prompt logprobs so far
  };
  struct Waker {
    std::mutex mu;
    std::function<void()> fn;
  };

  void advance();
  void handle(size_t prompt, ChoiceUpdate& u);
  void echo_prompt(ChoiceState& c, const PromptState& ps);
  void add_tokens(ChoiceState& c, const ChoiceUpdate& u);
  void stream_completion(ChoiceState& c, const ChoiceUpdate& u, const std::string& text);
  void stream_chat(ChoiceState& c, const ChoiceUpdate& u);
  nlohmann::json chunk_envelope(nlohmann::json choices) const;
  void finish();
  nlohmann::json completion_body() const;
  nlohmann::json chat_body() const;
  int64_t num_prompt_tokens() const;
  int64_t num_generated_tokens() const;
  void cancel_runs();

  ServingContext& ctx_;
  const SourceOptions opt_;
  const TokenText tt_;
  std::shared_ptr<Waker> waker_;

  std::mutex mu_;  // pull / cancel may come from different transport threads
  std::vector<PromptState> prompts_;
  std::vector<ChoiceState> choices_;
  std::string out_;  // bytes ready for the transport
  size_t out_pos_ = 0;
  bool roles_sent_ = false;
  bool finished_ = false;
  bool cancelled_ = false;
  std::string error_;
  int error_status_ = 0;  // non-streamed: the status the failed response goes out with
};

}  // namespace kl::openai
