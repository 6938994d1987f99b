// A gRPC test server for out-of-process clients (tests/clients/grpc_client_test.mjs): Engine +
// FakeExecutor + the test tokenizer + GrpcServer on a free port. Prints "PORT <n>" on stdout
// once serving and runs until SIGTERM or SIGINT (options: --api-key KEY).
#include <chrono>
#include <csignal>
#include <cstdio>
#include <iostream>
#include <string>
#include <thread>

#include "tests/support/grpc_test_stack.h"

namespace {
volatile std::sig_atomic_t g_stop = 0;
void on_signal(int) {
  g_stop = 1;
}
}  // namespace

int main(int argc, char** argv) {
  std::signal(SIGTERM, on_signal);
  std::signal(SIGINT, on_signal);
  kl::test::GrpcStackOptions options;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--api-key" && i + 1 < argc) options.api_key = argv[++i];
  }
  try {
    kl::test::GrpcTestStack stack(options);
    std::cout << "PORT " << stack.port() << std::endl;
    while (!g_stop) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "grpc test server: %s\n", e.what());
    return 1;
  }
  return 0;
}
