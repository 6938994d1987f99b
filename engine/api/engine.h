// The Engine facade: owns the engine thread, the Scheduler and the injected Executor. Front-end
// threads only submit, cancel and read their RequestStreams. The loop is pipelined: step N+1 is
// planned and submitted while step N runs (principle 10).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "engine/api/request_stream.h"
#include "engine/api/sampling_params.h"
#include "engine/exec/executor.h"
#include "engine/sched/scheduler.h"

namespace kl {

struct EngineConfig {
  SchedulerConfig scheduler;
  int64_t vocab_size = 0;
  int64_t max_num_waiting = 1024;  // requests queued beyond the running set; more are refused
  uint64_t seed = 0;               // seeds of unseeded requests are drawn from this
  // Called once, on the engine thread, when the executor reports a fatal error (a CUDA error):
  // by then every request has been failed with the message and the engine accepts no more.
  std::function<void(const std::string& error)> on_fatal;
};

struct GenerateRequest {
  std::vector<int32_t> prompt;
  SamplingParams params;
  int priority = 0;
};

enum class SubmitStatus : uint8_t { kOk, kInvalid, kOverloaded, kShuttingDown };

struct SubmitResult {
  SubmitStatus status = SubmitStatus::kOk;
  std::string error;  // why, for anything but kOk
  std::shared_ptr<RequestStream> stream;
};

struct EngineStats {
  int num_running = 0;
  int num_waiting = 0;  // sequences waiting in the scheduler (preempted ones too)
  int64_t num_preemptions = 0;
  int64_t num_steps = 0;
  int64_t num_prompt_tokens = 0;      // prompt tokens of admitted requests
  int64_t num_generation_tokens = 0;  // sampled tokens delivered
  double page_usage = 0;              // fraction of MLA pages in use
  double state_block_usage = 0;       // fraction of KDA state blocks in use
};

class Engine {
 public:
  Engine(EngineConfig config, std::unique_ptr<Executor> executor);
  ~Engine();  // stop(): aborts what is left, joins the thread
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Validates and queues a request; fails fast (kOverloaded) when max_num_waiting requests wait.
  SubmitResult submit(GenerateRequest request);
  // Aborts a request: its caches are released at the next step boundary and its stream ends with
  // FinishReason::kAbort. Unknown or finished ids are ignored.
  void cancel(int64_t request_id);
  EngineStats stats() const;
  // Refuses new requests from now on (kShuttingDown).
  void stop_accepting();
  // Waits up to `timeout` for every admitted request to finish; true when the engine is idle.
  bool wait_idle(std::chrono::milliseconds timeout);
  // Stops accepting requests; with drain, waits until running and waiting requests finish;
  // without, aborts them. Joins the engine thread.
  void shutdown(bool drain);
  // The executor's fatal error, once one happened ("" before).
  std::string fatal_error() const;

 private:
  void loop();
  void take_inbox();
  void dispatch(std::vector<SeqEvent> events);  // moves each event into its stream
  void publish_stats();
  void fail_everything(const std::string& error);  // after a fatal executor error

  const EngineConfig config_;
  std::unique_ptr<Executor> executor_;
  Scheduler scheduler_;  // engine thread only

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::pair<GenerateRequest, std::shared_ptr<RequestStream>>> inbox_;
  std::vector<int64_t> cancels_;
  bool accepting_ = true;
  bool stop_ = false;
  std::string fatal_error_;
  int64_t next_request_id_ = 0;
  uint64_t seed_state_;
  EngineStats stats_;

  std::unordered_map<int64_t, std::shared_ptr<RequestStream>> streams_;  // engine thread only
  std::thread thread_;  // last: starts once everything above exists
};

}  // namespace kl
