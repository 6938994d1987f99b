// GrpcTestStack: wiring of the served stack for the gRPC tests.
#include "tests/support/grpc_test_stack.h"

#include "server/tokenizer/default_tokenizer.h"
#include "server/tokenizer/kimi_tokenizer.h"

namespace kl::test {

std::shared_ptr<const tok::Tokenizer> grpc_test_tokenizer() {
  // Training takes a moment; every test of a binary shares the one result.
  static const std::shared_ptr<const tok::Tokenizer> tokenizer =
      tok::make_kimi_tokenizer(tok::train_default_ranks(kGrpcTestNumRegular),
                               tok::kimi_default_specials(kGrpcTestNumRegular));
  return tokenizer;
}

GrpcTestStack::GrpcTestStack(GrpcStackOptions options) : options_(std::move(options)) {
  EngineConfig config;
  config.vocab_size = kGrpcTestVocab;
  config.max_num_waiting = options_.max_num_waiting;
  config.scheduler.max_model_len = options_.max_model_len;
  config.scheduler.max_num_batched_tokens = 1024;
  config.scheduler.max_num_seqs = 16;
  config.scheduler.check_invariants = true;
  // No EOS ids: the fake's tokens then never end a choice early, so tests know every token.
  auto fake =
      std::make_unique<FakeExecutor>(options_.num_pages, 32, options_.step_delay, kGrpcTestVocab);
  fake_ = fake.get();
  engine_ = std::make_unique<Engine>(config, std::move(fake));

  ctx_.engine = engine_.get();
  if (options_.with_tokenizer) {
    ctx_.tokenizer = grpc_test_tokenizer();
    ctx_.control_ids = tok::KimiControlIds::resolve(*ctx_.tokenizer);
  }
  ctx_.card.served_model_name = "kimi-linear-test";
  ctx_.card.model_dir = "<grpc test>";
  ctx_.card.max_model_len = options_.max_model_len;
  ctx_.card.vocab_size = kGrpcTestVocab;
  ctx_.health = HealthState::kReady;

  grpcfe::GrpcOptions g;
  g.host = options_.host;
  g.port = options_.port;
  g.api_key = options_.api_key;
  server_ = std::make_unique<grpcfe::GrpcServer>(ctx_, g);
  server_->start();
}

GrpcTestStack::~GrpcTestStack() {
  // The server first: its handlers hold GenerationRuns that reference the engine.
  server_->stop(std::chrono::milliseconds(100));
  server_.reset();
  engine_->shutdown(false);
}

std::string GrpcTestStack::address() const {
  return options_.host + ":" + std::to_string(server_->port());
}

}  // namespace kl::test
