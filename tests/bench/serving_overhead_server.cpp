// The HTTP serving stack with a no-op model (a benchmark helper, not a test): Engine +
// FakeExecutor (no compute, deterministic tokens) + the default tokenizer + the HTTP server and
// OpenAI routes, so that a load generator measures the server's own cost per streamed token.
// Prints "PORT <n>" once serving; runs until SIGTERM/SIGINT.
#include <csignal>
#include <cstdio>

#include "engine/api/engine.h"
#include "engine/core/log.h"
#include "engine/exec/fake_executor.h"
#include "server/http/builtin_routes.h"
#include "server/http/http_server.h"
#include "server/openai/openai_routes.h"
#include "server/tokenizer/default_tokenizer.h"

using namespace kl;

int main() {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  spdlog::set_level(spdlog::level::warn);

  auto ranks = tok::train_default_ranks();
  auto tokenizer = tok::make_kimi_tokenizer(
      std::move(ranks), tok::kimi_default_specials(tok::kDefaultNumRegularTokens));
  EngineConfig ec;
  ec.vocab_size = tok::kDefaultVocabSize;
  ec.max_num_waiting = 4096;
  ec.scheduler.max_num_seqs = 256;
  ec.scheduler.max_num_batched_tokens = 16384;
  ec.scheduler.max_model_len = 4096;
  Engine engine(ec, std::make_unique<FakeExecutor>(8192, 256, std::chrono::microseconds(0),
                                                   tok::kDefaultNumRegularTokens));
  ServingContext ctx;
  ctx.engine = &engine;
  ctx.tokenizer = tokenizer;
  ctx.control_ids = tok::KimiControlIds::resolve(*tokenizer);
  ctx.card.served_model_name = "noop";
  ctx.card.max_model_len = ec.scheduler.max_model_len;
  ctx.card.vocab_size = ec.vocab_size;
  Metrics metrics("noop");
  ctx.metrics = &metrics;
  ctx.health = HealthState::kReady;
  http::Router router;
  http::add_builtin_routes(router, ctx);
  openai::add_openai_routes(router, ctx);
  http::ServerOptions o;
  o.host = "127.0.0.1";
  o.port = 0;
  http::Server server(o, std::move(router));
  server.start();
  std::printf("PORT %u\n", server.port());
  std::fflush(stdout);
  int sig = 0;
  sigwait(&signals, &sig);
  server.stop(std::chrono::milliseconds(500));
  engine.shutdown(false);
  return 0;
}
