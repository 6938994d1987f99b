// A served stack for gRPC tests: Engine + FakeExecutor (deterministic tokens) + the project's
// own tokenizer (trained once per process) + ServingContext + GrpcServer on a free port. Used by
// the Catch2 gRPC tests and by the test server that the node client test talks to.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "engine/api/engine.h"
#include "engine/exec/fake_executor.h"
#include "server/grpc/grpc_server.h"
#include "server/serving/serving_context.h"

namespace kl::test {

// Regular tokens of the test tokenizer (its vocabulary adds Kimi's 256 special slots).
inline constexpr int32_t kGrpcTestNumRegular = 512;
inline constexpr int32_t kGrpcTestVocab = kGrpcTestNumRegular + 256;

struct GrpcStackOptions {
  bool with_tokenizer = true;
  std::string api_key;
  int64_t max_model_len = 512;
  int64_t max_num_waiting = 64;
  std::chrono::microseconds step_delay{1000};
  int64_t num_pages = 256;
  std::string host = "127.0.0.1";
  uint16_t port = 0;
};

// The test tokenizer (BPE trained from the default corpus; cached in a static).
std::shared_ptr<const tok::Tokenizer> grpc_test_tokenizer();

class GrpcTestStack {
 public:
  explicit GrpcTestStack(GrpcStackOptions options = {});
  ~GrpcTestStack();

  Engine& engine() { return *engine_; }
  FakeExecutor& executor() { return *fake_; }
  ServingContext& context() { return ctx_; }
  grpcfe::GrpcServer& server() { return *server_; }
  uint16_t port() const { return server_->port(); }
  std::string address() const;  // "127.0.0.1:<port>"

 private:
  GrpcStackOptions options_;
  FakeExecutor* fake_ = nullptr;  // owned by the engine
  std::unique_ptr<Engine> engine_;
  ServingContext ctx_;
  std::unique_ptr<grpcfe::GrpcServer> server_;
};

}  // namespace kl::test
