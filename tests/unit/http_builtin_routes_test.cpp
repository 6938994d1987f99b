// The built-in routes over the real transport, against a real Engine (FakeExecutor) and Metrics:
// /health follows the health state, /metrics carries vLLM's names and klserve's KDA gauge,
// /version and /v1/models have the documented shapes.
#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include "engine/api/engine.h"
#include "engine/exec/fake_executor.h"
#include "http_test_client.h"
#include "server/http/builtin_routes.h"

using namespace kl;
using namespace std::chrono_literals;
using kl::test::HttpTestClient;

namespace {

struct Fixture {
  Fixture() : metrics("kimi-test") {
    EngineConfig c;
    c.vocab_size = 1000;
    c.scheduler.max_num_batched_tokens = 256;
    c.scheduler.max_num_seqs = 4;
    c.scheduler.max_model_len = 512;
    engine = std::make_unique<Engine>(c, std::make_unique<FakeExecutor>(64, 8, 1ms));
    ctx.engine = engine.get();
    ctx.metrics = &metrics;
    ctx.card.served_model_name = "kimi-test";
    ctx.card.max_model_len = 512;
    ctx.card.created = 1700000000;
    http::Router router;
    http::add_builtin_routes(router, ctx);
    http::ServerOptions o;
    o.host = "127.0.0.1";
    o.port = 0;
    server = std::make_unique<http::Server>(o, std::move(router));
    server->start();
  }
  kl::test::HttpReply get(const std::string& path) {
    HttpTestClient c(server->port());
    c.send_request("GET", path);
    auto r = c.read_reply();
    REQUIRE(r);
    return *r;
  }

  Metrics metrics;
  std::unique_ptr<Engine> engine;
  ServingContext ctx;
  std::unique_ptr<http::Server> server;  // last: stops before what its routes read goes away
};

}  // namespace

TEST_CASE("builtin routes: /health is 503 until ready, and again while draining") {
  Fixture f;
  auto r = f.get("/health");
  CHECK(r.status == 503);
  CHECK(nlohmann::json::parse(r.body)["status"] == "loading");
  f.ctx.health = HealthState::kReady;
  r = f.get("/health");
  CHECK(r.status == 200);
  CHECK(nlohmann::json::parse(r.body)["status"] == "ok");
  f.ctx.health = HealthState::kDraining;
  CHECK(f.get("/health").status == 503);
  f.ctx.health = HealthState::kFailed;
  CHECK(f.get("/health").status == 503);
  // POST is not a health check.
  HttpTestClient c(f.server->port());
  c.send_request("POST", "/health", "", "{}");
  auto p = c.read_reply();
  REQUIRE(p);
  CHECK(p->status == 405);
}

TEST_CASE("builtin routes: /metrics is Prometheus text with vLLM's names") {
  Fixture f;
  f.metrics.on_time_to_first_token(0.05);
  GenerateRequest req;
  req.prompt = {10, 11, 12, 13};
  req.params.max_tokens = 3;
  req.params.temperature = 0.f;
  auto sub = f.engine->submit(req);
  REQUIRE(sub.status == SubmitStatus::kOk);
  while (!sub.stream->done()) REQUIRE(sub.stream->next(5000ms).has_value());

  auto r = f.get("/metrics");
  CHECK(r.status == 200);
  CHECK(r.headers["content-type"].find("text/plain; version=0.0.4") == 0);
  for (const char* name :
       {"vllm:num_requests_running{", "vllm:num_requests_waiting{", "vllm:kv_cache_usage_perc{",
        "klserve:kda_state_block_usage_perc{", "vllm:num_preemptions_total{",
        "# TYPE vllm:time_to_first_token_seconds histogram",
        "vllm:time_to_first_token_seconds_bucket{", "vllm:time_to_first_token_seconds_count{",
        "model_name=\"kimi-test\""}) {
    INFO(name);
    CHECK(r.body.find(name) != std::string::npos);
  }
  CHECK(r.body.back() == '\n');
}

TEST_CASE("builtin routes: /version and /v1/models") {
  Fixture f;
  auto r = f.get("/version");
  CHECK(r.status == 200);
  auto v = nlohmann::json::parse(r.body);
  REQUIRE(v["version"].is_string());
  CHECK(v["version"].get<std::string>().find('.') != std::string::npos);

  r = f.get("/v1/models");
  CHECK(r.status == 200);
  CHECK(r.headers["content-type"] == "application/json");
  auto m = nlohmann::json::parse(r.body);
  CHECK(m["object"] == "list");
  REQUIRE(m["data"].is_array());
  REQUIRE(m["data"].size() == 1);
  const auto& d = m["data"][0];
  CHECK(d["id"] == "kimi-test");
  CHECK(d["object"] == "model");
  CHECK(d["created"] == 1700000000);
  CHECK(d["owned_by"] == "klserve");
  CHECK(d["max_model_len"] == 512);
}
