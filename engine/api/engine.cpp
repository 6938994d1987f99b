// The engine loop: take new requests and cancellations, plan, submit, collect the previous step,
// apply it, deliver outputs. At most two steps are in flight: the one running and the one planned.
#include "engine/api/engine.h"

#include "engine/core/error.h"
#include "engine/core/log.h"

namespace kl {

Engine::Engine(EngineConfig config, std::unique_ptr<Executor> executor)
    : config_(std::move(config)),
      executor_(std::move(executor)),
      scheduler_(config_.scheduler, executor_->num_pages(), executor_->num_state_blocks()),
      seed_state_(config_.seed),
      thread_([this] { loop(); }) {
  logger("engine")->info(
      "engine ready: {} pages = {} tokens, {} state blocks; max_num_seqs {}, "
      "max_num_batched_tokens {}, max_model_len {}, max_num_waiting {}",
      executor_->num_pages(), executor_->num_pages() * kPageSize, executor_->num_state_blocks(),
      config_.scheduler.max_num_seqs, config_.scheduler.max_num_batched_tokens,
      config_.scheduler.max_model_len, config_.max_num_waiting);
}

Engine::~Engine() {
  shutdown(false);
}

SubmitResult Engine::submit(GenerateRequest request) {
  SubmitResult r;
  try {
    request.params.validate(config_.vocab_size);
    for (int32_t t : request.prompt)
      KL_CHECK(t >= 0 && t < config_.vocab_size, "prompt token {} outside the vocabulary [0, {})",
               t, config_.vocab_size);
    const int64_t len = static_cast<int64_t>(request.prompt.size());
    const int64_t max_len = config_.scheduler.max_model_len;
    KL_CHECK(len >= 1, "the prompt is empty");
    KL_CHECK(len < max_len,
             "This model's maximum context length is {} tokens. However, you requested {} tokens "
             "in the prompt (at least one must remain for the completion). Please reduce the "
             "length of the input.",
             max_len, len);
  } catch (const Error& e) {
    r.status = SubmitStatus::kInvalid;
    r.error = e.what();
    return r;
  }
  std::lock_guard<std::mutex> lock(mu_);
  if (!accepting_) {
    r.status = SubmitStatus::kShuttingDown;
    r.error = fatal_error_.empty() ? "the server is shutting down"
                                   : "the engine stopped after a fatal error: " + fatal_error_;
    return r;
  }
  const int64_t waiting = static_cast<int64_t>(inbox_.size()) + stats_.num_waiting;
  if (waiting >= config_.max_num_waiting) {
    r.status = SubmitStatus::kOverloaded;
    r.error = fmt::format("overloaded: {} requests are already waiting (--max-num-waiting {})",
                          waiting, config_.max_num_waiting);
    return r;
  }
  r.stream = std::make_shared<RequestStream>(next_request_id_++, request.params.n);
  inbox_.emplace_back(std::move(request), r.stream);
  cv_.notify_all();
  return r;
}

void Engine::cancel(int64_t request_id) {
  std::lock_guard<std::mutex> lock(mu_);
  cancels_.push_back(request_id);
  cv_.notify_all();
}

EngineStats Engine::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

std::string Engine::fatal_error() const {
  std::lock_guard<std::mutex> lock(mu_);
  return fatal_error_;
}

void Engine::fail_everything(const std::string& error) {
  const std::string msg = "the engine stopped after a fatal error: " + error;
  decltype(inbox_) inbox;
  {
    std::lock_guard<std::mutex> lock(mu_);
    fatal_error_ = error;
    accepting_ = false;
    stop_ = true;
    inbox.swap(inbox_);
    cv_.notify_all();
  }
  for (auto& [req, stream] : inbox) stream->fail(msg);
  for (auto& [id, stream] : streams_) stream->fail(msg);
  streams_.clear();
  if (config_.on_fatal) config_.on_fatal(error);
}

void Engine::stop_accepting() {
  std::lock_guard<std::mutex> lock(mu_);
  accepting_ = false;
}

bool Engine::wait_idle(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  return cv_.wait_for(lock, timeout, [this] {
    return inbox_.empty() && stats_.num_running == 0 && stats_.num_waiting == 0;
  });
}

void Engine::shutdown(bool drain) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    accepting_ = false;
    if (!drain) stop_ = true;
    cv_.notify_all();
  }
  if (drain) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [this] {
      return inbox_.empty() && stats_.num_running == 0 && stats_.num_waiting == 0;
    });
    stop_ = true;
    cv_.notify_all();
  }
  if (thread_.joinable()) thread_.join();
}

// Moves new requests and cancellations into the scheduler (engine thread).
void Engine::take_inbox() {
  decltype(inbox_) inbox;
  std::vector<int64_t> cancels;
  {
    std::lock_guard<std::mutex> lock(mu_);
    inbox.swap(inbox_);
    cancels.swap(cancels_);
    // Counted as waiting until publish_stats() reads the scheduler, so that admission control
    // never misses a request in transit.
    stats_.num_waiting += static_cast<int>(inbox.size());
  }
  for (auto& [req, stream] : inbox) {
    uint64_t seed = req.params.seed ? *req.params.seed : (seed_state_ += 0x9E3779B97F4A7C15ull);
    const int64_t prompt_len = static_cast<int64_t>(req.prompt.size());
    try {
      scheduler_.add_request(stream->id(), std::move(req.prompt),
                             std::make_shared<const SamplingParams>(std::move(req.params)), seed,
                             req.priority);
      streams_[stream->id()] = stream;
      std::lock_guard<std::mutex> lock(mu_);
      stats_.num_prompt_tokens += prompt_len;
    } catch (const Error& e) {  // a request that can never run (context length, cache size)
      stream->fail(e.what());
    }
  }
  std::vector<SeqEvent> events;
  for (int64_t id : cancels) scheduler_.abort_request(id, events);
  dispatch(std::move(events));
}

void Engine::dispatch(std::vector<SeqEvent> events) {
  for (SeqEvent& e : events) {
    auto it = streams_.find(e.request_id);
    if (it == streams_.end()) continue;
    RequestOutput out;
    out.index = e.index;
    out.token = e.token;
    out.logprob = e.logprob;
    out.top_logprobs = std::move(e.top_logprobs);
    out.prompt_logprobs = std::move(e.prompt_logprobs);
    out.finish = e.finish;
    out.error = std::move(e.error);
    out.num_prompt_tokens = e.num_prompt_tokens;
    out.num_generated = e.num_generated;
    if (e.token >= 0) {
      std::lock_guard<std::mutex> lock(mu_);
      ++stats_.num_generation_tokens;
    }
    it->second->push(std::move(out));
    if (it->second->finished()) streams_.erase(it);
  }
}

void Engine::publish_stats() {
  const SchedulerStats s = scheduler_.stats();
  std::lock_guard<std::mutex> lock(mu_);
  stats_.num_running = s.num_running;
  stats_.num_waiting = s.num_waiting;
  stats_.num_preemptions = s.num_preemptions;
  stats_.page_usage = s.num_pages ? 1.0 - double(s.num_free_pages) / s.num_pages : 0.0;
  stats_.state_block_usage =
      s.num_state_blocks ? 1.0 - double(s.num_free_state_blocks) / s.num_state_blocks : 0.0;
  cv_.notify_all();
}

void Engine::loop() {
  auto log = logger("engine");
  std::deque<StepPlan> in_flight;
  for (;;) {
    take_inbox();
    {
      std::unique_lock<std::mutex> lock(mu_);
      if (stop_) break;
      if (in_flight.empty() && !scheduler_.has_unfinished()) {
        cv_.wait(lock, [this] { return stop_ || !inbox_.empty() || !cancels_.empty(); });
        continue;
      }
    }
    StepPlan plan = scheduler_.schedule();
    // Cache operations without compute (a fork whose children did not fit the budget) still
    // have to reach the executor; a plan with nothing at all is dropped.
    const bool submitted = !plan.seqs.empty() || !plan.block_ops.empty() ||
                           !plan.page_copies.empty() || !plan.new_seqs.empty();
    if (submitted) {
      executor_->submit(plan);
      in_flight.push_back(std::move(plan));
      std::lock_guard<std::mutex> lock(mu_);
      ++stats_.num_steps;
    }
    // Collect the older step once the next one is queued behind it (or nothing else can be
    // planned until it lands).
    if (in_flight.size() >= 2 || (!submitted && !in_flight.empty())) {
      StepResult r = executor_->collect();
      if (!r.ok) log->error("step {} failed: {}", r.step_id, r.error);
      if (r.fatal) {
        in_flight.pop_front();
        log->critical("fatal executor error: failing every request and stopping");
        fail_everything(r.error);
        break;
      }
      dispatch(scheduler_.update(in_flight.front(), r));
      in_flight.pop_front();
    } else if (!submitted) {
      // Work exists but none can be planned (e.g. waiting for caches): wait for news.
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait_for(lock, std::chrono::milliseconds(1),
                   [this] { return stop_ || !inbox_.empty() || !cancels_.empty(); });
    }
    publish_stats();
  }
  // Stopping: collect what is in flight, then end every remaining request.
  while (!in_flight.empty()) {
    StepResult r = executor_->collect();
    if (!r.fatal && fatal_error().empty()) dispatch(scheduler_.update(in_flight.front(), r));
    in_flight.pop_front();
  }
  std::vector<int64_t> ids;
  for (const auto& [id, stream] : streams_) ids.push_back(id);
  std::vector<SeqEvent> events;
  for (int64_t id : ids) scheduler_.abort_request(id, events);
  dispatch(std::move(events));
  publish_stats();
}

}  // namespace kl
