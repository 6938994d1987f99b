// RequestStream: the per-request output channel. The engine thread pushes outputs; one consumer
// (an HTTP/gRPC handler) reads them, blocking or via a ready callback. Nothing on the engine
// thread ever waits on the consumer.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "engine/sched/sequence.h"
#include "kernels/sampling/sampling.h"

namespace kl {

struct RequestOutput {
  int index = 0;       // sample index (0..n-1)
  int32_t token = -1;  // -1: no token in this output (a finish, prompt logprobs)
  float logprob = 0.f;
  std::vector<kernels::TokenLogprob> top_logprobs;
  std::vector<std::vector<kernels::TokenLogprob>> prompt_logprobs;
  FinishReason finish = FinishReason::kNone;
  std::string error;  // FinishReason::kError
  int64_t num_prompt_tokens = 0;
  int64_t num_generated = 0;
};

class RequestStream {
 public:
  RequestStream(int64_t id, int n) : id_(id), num_unfinished_(n) {}

  int64_t id() const { return id_; }
  // The next output, waiting up to `timeout`; nullopt on timeout or when finished and drained.
  std::optional<RequestOutput> next(std::chrono::milliseconds timeout);
  // Every output available now (never blocks).
  std::vector<RequestOutput> drain();
  // True once every sample has finished and all outputs were read.
  bool done() const;
  bool finished() const;  // every sample has finished (outputs may remain unread)
  // Called (on the engine thread, without locks held) whenever outputs arrive; keep it cheap.
  void set_on_ready(std::function<void()> cb);

  // Engine side.
  void push(RequestOutput out);
  // Ends every sample at once with FinishReason::kError (a request that can never run).
  void fail(const std::string& error);

 private:
  const int64_t id_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<RequestOutput> queue_;
  int num_unfinished_;
  std::function<void()> on_ready_;
};

}  // namespace kl
