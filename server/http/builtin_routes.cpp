// The built-in routes: /health (readiness for probes and load balancers), /metrics (Prometheus
// text), /version and /v1/models (the one served model, in OpenAI's list shape).
#include "server/http/builtin_routes.h"

#include <chrono>

#include <nlohmann/json.hpp>

#ifndef KL_PROJECT_VERSION
#define KL_PROJECT_VERSION "unknown"
#endif

namespace kl::http {
namespace {

Response json_response(int status, const nlohmann::json& j) {
  Response r;
  r.status = status;
  r.content_type = "application/json";
  r.body = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  return r;
}

const char* health_name(HealthState s) {
  switch (s) {
    case HealthState::kLoading:
      return "loading";
    case HealthState::kReady:
      return "ok";
    case HealthState::kDraining:
      return "draining";
    case HealthState::kFailed:
      return "failed";
  }
  return "unknown";
}

}  // namespace

void add_builtin_routes(Router& router, ServingContext& ctx) {
  // The context outlives the server (it owns the engine the routes read), so capturing it by
  // reference is safe.
  router.add("GET", "/health", [&ctx](const Request&) -> HandlerResult {
    const HealthState s = ctx.health.load();
    // 503 (not 500) while loading or draining: probes retry, load balancers route elsewhere.
    return json_response(s == HealthState::kReady ? 200 : 503, {{"status", health_name(s)}});
  });

  router.add("GET", "/metrics", [&ctx](const Request&) -> HandlerResult {
    Response r;
    r.content_type = "text/plain; version=0.0.4; charset=utf-8";
    if (ctx.metrics != nullptr) {
      Engine* engine = ctx.engine.load();
      const EngineStats stats = engine != nullptr ? engine->stats() : EngineStats{};
      r.body = ctx.metrics->render(stats);
    }
    return r;
  });

  router.add("GET", "/version", [](const Request&) -> HandlerResult {
    return json_response(200, {{"version", KL_PROJECT_VERSION}});
  });

  router.add("GET", "/v1/models", [&ctx](const Request&) -> HandlerResult {
    int64_t created = ctx.card.created;
    if (created == 0) {
      created = std::chrono::duration_cast<std::chrono::seconds>(
                    std::chrono::system_clock::now().time_since_epoch())
                    .count();
    }
    const std::string& id = ctx.card.served_model_name;
    // vLLM's shape; "root" is the served name rather than a filesystem path, which clients do
    // not need to see.
    nlohmann::json model = {{"id", id},
                            {"object", "model"},
                            {"created", created},
                            {"owned_by", "klserve"},
                            {"root", id},
                            {"parent", nullptr},
                            {"max_model_len", ctx.card.max_model_len}};
    return json_response(200, {{"object", "list"}, {"data", nlohmann::json::array({model})}});
  });
}

}  // namespace kl::http
