// The klserve.v1.Klserve service on grpc++'s synchronous API: each Generate call runs on one
// server thread that waits on its GenerationRun in short slices and checks for cancellation
// between them, so a cancelled or vanished client aborts its engine request within ~10 ms.
#pragma once

#include <string>

#include <grpcpp/grpcpp.h>

#include "klserve/v1/klserve.grpc.pb.h"
#include "server/serving/serving_context.h"

namespace kl::grpcfe {

class KlserveService final : public ::klserve::v1::Klserve::Service {
 public:
  // `api_key` non-empty: every call needs metadata "authorization: Bearer <api_key>".
  KlserveService(ServingContext& ctx, std::string api_key);

  grpc::Status Generate(grpc::ServerContext* sc, const ::klserve::v1::GenerateRequest* req,
                        grpc::ServerWriter<::klserve::v1::GenerateResponse>* writer) override;
  grpc::Status Tokenize(grpc::ServerContext* sc, const ::klserve::v1::TokenizeRequest* req,
                        ::klserve::v1::TokenizeResponse* resp) override;
  grpc::Status ModelInfo(grpc::ServerContext* sc, const ::klserve::v1::ModelInfoRequest* req,
                         ::klserve::v1::ModelInfoResponse* resp) override;

 private:
  grpc::Status authorize(const grpc::ServerContext& sc) const;
  // Counts a refused request in the metrics (by the HTTP status it corresponds to).
  grpc::Status refuse(grpc::StatusCode code, int http_status, const std::string& message) const;

  ServingContext& ctx_;
  const std::string api_key_;
};

}  // namespace kl::grpcfe
