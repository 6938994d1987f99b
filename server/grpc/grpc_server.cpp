// GrpcServer: builds the grpc++ server with the klserve.v1 service, the default grpc.health.v1
// service and server reflection; binds (port 0 picks a free port) and shuts down with a grace.
#include "server/grpc/grpc_server.h"

#include <mutex>

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>

#include "engine/core/error.h"
#include "engine/core/log.h"
#include "server/grpc/klserve_service.h"

namespace kl::grpcfe {

namespace {
constexpr const char* kServiceName = "klserve.v1.Klserve";
}  // namespace

struct GrpcServer::Impl {
  ServingContext& ctx;
  GrpcOptions options;
  std::unique_ptr<KlserveService> service;
  std::unique_ptr<grpc::Server> server;
  int port = 0;
  std::mutex mu;  // start / stop / set_serving from different threads (main, signal handler)
  bool stopped = false;

  Impl(ServingContext& c, GrpcOptions o) : ctx(c), options(std::move(o)) {}
};

GrpcServer::GrpcServer(ServingContext& ctx, GrpcOptions options)
    : impl_(std::make_unique<Impl>(ctx, std::move(options))) {}

GrpcServer::~GrpcServer() {
  stop(std::chrono::milliseconds(0));
}

void GrpcServer::start() {
  std::lock_guard<std::mutex> lock(impl_->mu);
  KL_CHECK(!impl_->server, "the gRPC server is already started");
  // Both must be switched on before the builder exists: they register as builder plugins.
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();

  const std::string key =
      impl_->options.api_key.empty() ? impl_->ctx.api_key : impl_->options.api_key;
  impl_->service = std::make_unique<KlserveService>(impl_->ctx, key);
  const std::string host =
      impl_->options.host.find(':') != std::string::npos && impl_->options.host.front() != '['
          ? "[" + impl_->options.host + "]"  // a bare IPv6 address
          : impl_->options.host;
  const std::string address = host + ":" + std::to_string(impl_->options.port);

  grpc::ServerBuilder builder;
  builder.AddListeningPort(address, grpc::InsecureServerCredentials(), &impl_->port);
  builder.RegisterService(impl_->service.get());
  // Prompts of a long context as token ids are ~4 bytes a token: allow well beyond gRPC's 4 MiB.
  builder.SetMaxReceiveMessageSize(64 << 20);
  impl_->server = builder.BuildAndStart();
  KL_CHECK(impl_->server && impl_->port > 0, "cannot listen for gRPC on {}", address);
  const bool serving = impl_->ctx.health.load() == HealthState::kReady;
  auto* health = impl_->server->GetHealthCheckService();
  health->SetServingStatus(serving);
  health->SetServingStatus(kServiceName, serving);
  logger("server")->debug(
      "gRPC listening on {}:{} (klserve.v1.Klserve, grpc.health.v1, reflection)",
      impl_->options.host, impl_->port);
}

uint16_t GrpcServer::port() const {
  return static_cast<uint16_t>(impl_->port);
}

void GrpcServer::set_serving(bool serving) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  if (!impl_->server || impl_->stopped) return;
  auto* health = impl_->server->GetHealthCheckService();
  health->SetServingStatus(serving);
  health->SetServingStatus(kServiceName, serving);
}

void GrpcServer::stop(std::chrono::milliseconds grace) {
  std::unique_lock<std::mutex> lock(impl_->mu);
  if (!impl_->server || impl_->stopped) return;
  impl_->stopped = true;
  grpc::Server* server = impl_->server.get();
  lock.unlock();
  // Calls still running at the deadline are cancelled; Generate handlers see IsCancelled() and
  // return, which aborts their engine requests.
  server->Shutdown(std::chrono::system_clock::now() + grace);
  server->Wait();
}

}  // namespace kl::grpcfe
