// RequestStream: a small locked queue between the engine thread and one consumer.
#include "engine/api/request_stream.h"

namespace kl {

std::optional<RequestOutput> RequestStream::next(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait_for(lock, timeout, [this] { return !queue_.empty() || num_unfinished_ == 0; });
  if (queue_.empty()) return std::nullopt;
  RequestOutput out = std::move(queue_.front());
  queue_.pop_front();
  return out;
}

std::vector<RequestOutput> RequestStream::drain() {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<RequestOutput> out(std::make_move_iterator(queue_.begin()),
                                 std::make_move_iterator(queue_.end()));
  queue_.clear();
  return out;
}

bool RequestStream::done() const {
  std::lock_guard<std::mutex> lock(mu_);
  return num_unfinished_ == 0 && queue_.empty();
}

bool RequestStream::finished() const {
  std::lock_guard<std::mutex> lock(mu_);
  return num_unfinished_ == 0;
}

void RequestStream::set_on_ready(std::function<void()> cb) {
  std::lock_guard<std::mutex> lock(mu_);
  on_ready_ = std::move(cb);
}

void RequestStream::push(RequestOutput out) {
  std::function<void()> cb;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (out.finish != FinishReason::kNone && num_unfinished_ > 0) --num_unfinished_;
    queue_.push_back(std::move(out));
    cb = on_ready_;
  }
  cv_.notify_all();
  if (cb) cb();
}

void RequestStream::fail(const std::string& error) {
  RequestOutput out;
  out.finish = FinishReason::kError;
  out.error = error;
  std::function<void()> cb;
  {
    std::lock_guard<std::mutex> lock(mu_);
    num_unfinished_ = 0;
    queue_.push_back(std::move(out));
    cb = on_ready_;
  }
  cv_.notify_all();
  if (cb) cb();
}

}  // namespace kl
