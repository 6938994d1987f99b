// Prometheus text exposition of the klserve metrics.
#include "server/metrics/metrics.h"

#include <cmath>

#include <fmt/format.h>

#include "engine/api/engine.h"

namespace kl {

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)), counts_(bounds_.size() + 1) {}

void Histogram::observe(double v) {
  size_t i = 0;
  while (i < bounds_.size() && v > bounds_[i]) ++i;
  counts_[i].fetch_add(1, std::memory_order_relaxed);
  count_.fetch_add(1, std::memory_order_relaxed);
  if (std::isfinite(v) && v > 0)
    sum_micros_.fetch_add(static_cast<uint64_t>(std::llround(v * 1e6)), std::memory_order_relaxed);
}

void Histogram::render(std::string& out, const std::string& name, const std::string& labels) const {
  uint64_t cumulative = 0;
  for (size_t i = 0; i < bounds_.size(); ++i) {
    cumulative += counts_[i].load(std::memory_order_relaxed);
    out += fmt::format("{}_bucket{{{},le=\"{}\"}} {}\n", name, labels, bounds_[i], cumulative);
  }
  cumulative += counts_.back().load(std::memory_order_relaxed);
  out += fmt::format("{}_bucket{{{},le=\"+Inf\"}} {}\n", name, labels, cumulative);
  out += fmt::format("{}_sum{{{}}} {}\n", name, labels,
                     sum_micros_.load(std::memory_order_relaxed) / 1e6);
  out += fmt::format("{}_count{{{}}} {}\n", name, labels, count_.load(std::memory_order_relaxed));
}

namespace {

// vLLM's bucket boundaries for the latency histograms.
std::vector<double> ttft_buckets() {
  return {0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1,  0.25,  0.5,   0.75,
          1.0,   2.5,   5.0,  7.5,  10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0};
}
std::vector<double> itl_buckets() {
  return {0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2,  0.3,  0.4, 0.5,
          0.75, 1.0,   2.5,  5.0,   7.5, 10.0, 20.0, 40.0, 80.0};
}
std::vector<double> e2e_buckets() {
  return {0.3,  0.5,  0.8,  1.0,  1.5,   2.0,   2.5,   5.0,   10.0,   15.0,  20.0,
          30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0};
}
std::vector<double> length_buckets() {
  return {1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000, 100000};
}

void header(std::string& out, const char* name, const char* type, const char* help) {
  out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
}

}  // namespace

Metrics::Metrics(std::string model_name)
    : labels_(fmt::format("model_name=\"{}\"", model_name)),
      ttft_(ttft_buckets()),
      itl_(itl_buckets()),
      e2e_(e2e_buckets()),
      prompt_len_(length_buckets()),
      gen_len_(length_buckets()) {}

void Metrics::on_request_done(double e2e_seconds, int64_t prompt_tokens, int64_t generation_tokens,
                              const std::string& finish_reason) {
  e2e_.observe(e2e_seconds);
  prompt_len_.observe(static_cast<double>(prompt_tokens));
  gen_len_.observe(static_cast<double>(generation_tokens));
  prompt_tokens_.fetch_add(prompt_tokens, std::memory_order_relaxed);
  generation_tokens_.fetch_add(generation_tokens, std::memory_order_relaxed);
  if (finish_reason == "stop")
    finished_stop_++;
  else if (finish_reason == "length")
    finished_length_++;
  else if (finish_reason == "tool_calls")
    finished_tool_calls_++;
  else if (finish_reason == "abort")
    finished_abort_++;
  else
    finished_error_++;
}

void Metrics::on_request_error(int http_status) {
  (http_status >= 500 ? errors_5xx_ : errors_4xx_).fetch_add(1, std::memory_order_relaxed);
}

std::string Metrics::render(const EngineStats& s) const {
  std::string out;
  const std::string& l = labels_;
  header(out, "vllm:num_requests_running", "gauge",
         "Number of requests in model execution batches.");
  out += fmt::format("vllm:num_requests_running{{{}}} {}\n", l, s.num_running);
  header(out, "vllm:num_requests_waiting", "gauge", "Number of requests waiting to be processed.");
  out += fmt::format("vllm:num_requests_waiting{{{}}} {}\n", l, s.num_waiting);
  header(out, "vllm:kv_cache_usage_perc", "gauge",
         "KV-cache (MLA pages) usage. 1 means 100 percent usage.");
  out += fmt::format("vllm:kv_cache_usage_perc{{{}}} {}\n", l, s.page_usage);
  header(out, "klserve:kda_state_block_usage_perc", "gauge",
         "KDA recurrent-state block usage. 1 means 100 percent usage.");
  out += fmt::format("klserve:kda_state_block_usage_perc{{{}}} {}\n", l, s.state_block_usage);
  header(out, "vllm:num_preemptions_total", "counter", "Cumulative number of preemptions.");
  out += fmt::format("vllm:num_preemptions_total{{{}}} {}\n", l, s.num_preemptions);
  header(out, "vllm:prompt_tokens_total", "counter", "Number of prefill tokens processed.");
  out += fmt::format("vllm:prompt_tokens_total{{{}}} {}\n", l, prompt_tokens_.load());
  header(out, "vllm:generation_tokens_total", "counter", "Number of generation tokens processed.");
  out += fmt::format("vllm:generation_tokens_total{{{}}} {}\n", l, generation_tokens_.load());
  header(out, "vllm:request_success_total", "counter", "Count of successfully processed requests.");
  out += fmt::format("vllm:request_success_total{{{},finished_reason=\"stop\"}} {}\n", l,
                     finished_stop_.load());
  out += fmt::format("vllm:request_success_total{{{},finished_reason=\"length\"}} {}\n", l,
                     finished_length_.load());
  out += fmt::format("vllm:request_success_total{{{},finished_reason=\"tool_calls\"}} {}\n", l,
                     finished_tool_calls_.load());
  out += fmt::format("vllm:request_success_total{{{},finished_reason=\"abort\"}} {}\n", l,
                     finished_abort_.load());
  header(out, "klserve:request_errors_total", "counter", "Requests answered with an error status.");
  out +=
      fmt::format("klserve:request_errors_total{{{},class=\"4xx\"}} {}\n", l, errors_4xx_.load());
  out += fmt::format("klserve:request_errors_total{{{},class=\"5xx\"}} {}\n", l,
                     errors_5xx_.load() + finished_error_.load());
  header(out, "vllm:time_to_first_token_seconds", "histogram",
         "Histogram of time to first token in seconds.");
  ttft_.render(out, "vllm:time_to_first_token_seconds", l);
  header(out, "vllm:inter_token_latency_seconds", "histogram",
         "Histogram of inter-token latency in seconds.");
  itl_.render(out, "vllm:inter_token_latency_seconds", l);
  header(out, "vllm:e2e_request_latency_seconds", "histogram",
         "Histogram of end to end request latency in seconds.");
  e2e_.render(out, "vllm:e2e_request_latency_seconds", l);
  header(out, "vllm:request_prompt_tokens", "histogram", "Number of prefill tokens processed.");
  prompt_len_.render(out, "vllm:request_prompt_tokens", l);
  header(out, "vllm:request_generation_tokens", "histogram",
         "Number of generation tokens processed.");
  gen_len_.render(out, "vllm:request_generation_tokens", l);
  return out;
}

}  // namespace kl
