// Prometheus metrics with vLLM's names (so existing dashboards work) plus klserve's KDA state
// blocks. Counters and histograms are updated lock-free from any thread; gauges are sampled from
// the engine's stats when /metrics is scraped.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

namespace kl {

class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds);
  void observe(double v);
  // Appends the Prometheus text of this histogram (buckets, _sum, _count) with labels.
  void render(std::string& out, const std::string& name, const std::string& labels) const;

 private:
  std::vector<double> bounds_;
  std::vector<std::atomic<uint64_t>> counts_;  // one per bound plus +Inf
  std::atomic<uint64_t> count_{0};
  std::atomic<uint64_t> sum_micros_{0};  // sum in 1e-6 units (atomic double is not portable)
};

struct EngineStats;

class Metrics {
 public:
  explicit Metrics(std::string model_name);

  // Request lifecycle (from the front ends, off the engine thread).
  void on_time_to_first_token(double seconds) { ttft_.observe(seconds); }
  void on_inter_token(double seconds) { itl_.observe(seconds); }
  void on_request_done(double e2e_seconds, int64_t prompt_tokens, int64_t generation_tokens,
                       const std::string& finish_reason);
  void on_request_error(int http_status);

  // The Prometheus text exposition, with gauges taken from `stats`.
  std::string render(const EngineStats& stats) const;

 private:
  std::string labels_;  // model_name="..."
  Histogram ttft_, itl_, e2e_, prompt_len_, gen_len_;
  std::atomic<uint64_t> prompt_tokens_{0}, generation_tokens_{0};
  std::atomic<uint64_t> finished_stop_{0}, finished_length_{0}, finished_abort_{0},
      finished_tool_calls_{0}, finished_error_{0};
  std::atomic<uint64_t> errors_4xx_{0}, errors_5xx_{0};
};

}  // namespace kl
