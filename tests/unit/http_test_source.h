// A scripted StreamSource for the transport tests: a producer thread (standing in for the engine
// thread) pushes pieces and calls the wake-up; the test observes pulls, bytes and cancel() through
// the shared state, which outlives the source the server owns.
#pragma once

#include <atomic>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include "server/http/http_types.h"

namespace kl::test {

struct SourceState {
  std::mutex mu;
  std::function<void()> wake;  // guarded by mu
  std::deque<std::string> queue;
  bool finished = false;   // no more pieces after the queue empties
  bool unbounded = false;  // every pull returns as much as allowed (a source that never waits)
  std::atomic<int> pulls{0};
  std::atomic<size_t> bytes{0};
  std::atomic<bool> cancelled{false};
  std::atomic<bool> destroyed{false};

  void push(std::string piece, bool last = false) {
    std::function<void()> w;
    {
      std::lock_guard<std::mutex> lock(mu);
      queue.push_back(std::move(piece));
      finished = finished || last;
      w = wake;
    }
    if (w) w();
  }
  void finish() {
    std::function<void()> w;
    {
      std::lock_guard<std::mutex> lock(mu);
      finished = true;
      w = wake;
    }
    if (w) w();
  }
};

class TestSource final : public http::StreamSource {
 public:
  explicit TestSource(std::shared_ptr<SourceState> st) : st_(std::move(st)) {}
  ~TestSource() override {
    std::lock_guard<std::mutex> lock(st_->mu);
    st_->wake = nullptr;
    st_->destroyed = true;
  }
  void set_wakeup(std::function<void()> wake) override {
    std::lock_guard<std::mutex> lock(st_->mu);
    st_->wake = std::move(wake);
  }
  Chunk pull(size_t max_bytes) override {
    ++st_->pulls;
    std::lock_guard<std::mutex> lock(st_->mu);
    Chunk c;
    if (st_->unbounded) {
      c.data.assign(std::min<size_t>(max_bytes, 8192), 'x');
    } else if (!st_->queue.empty()) {
      c.data = std::move(st_->queue.front());  // one piece per pull: one HTTP chunk per piece
      st_->queue.pop_front();
      c.done = st_->queue.empty() && st_->finished;
    } else {
      c.done = st_->finished;
    }
    st_->bytes += c.data.size();
    return c;
  }
  void cancel() override { st_->cancelled = true; }

 private:
  std::shared_ptr<SourceState> st_;
};

}  // namespace kl::test
