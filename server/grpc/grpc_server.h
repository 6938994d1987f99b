// The gRPC front end (proto/klserve/v1/klserve.proto): Generate (server streaming), Tokenize,
// ModelInfo, plus grpc.health.v1 and server reflection. Built only with KL_ENABLE_GRPC.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "server/serving/serving_context.h"

namespace kl::grpcfe {

struct GrpcOptions {
  std::string host = "0.0.0.0";
  uint16_t port = 50051;  // 0: pick a free port
  std::string api_key;    // non-empty: metadata "authorization: Bearer <key>" required
};

class GrpcServer {
 public:
  GrpcServer(ServingContext& ctx, GrpcOptions options);
  ~GrpcServer();
  void start();  // throws kl::Error naming the address on failure
  uint16_t port() const;
  void set_serving(bool serving);  // grpc.health.v1 status
  void stop(std::chrono::milliseconds grace);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace kl::grpcfe
