// klserve's command-line entry point: `klserve serve [MODEL_DIR] [flags]`, `klserve --version`.
#include <cstdio>

#include <CLI/CLI.hpp>

#include "engine/core/error.h"
#include "server/main/serve.h"

int main(int argc, char** argv) {
  CLI::App app{"klserve: an inference server for Kimi Linear models"};
  app.set_version_flag("--version", KL_VERSION);
  app.require_subcommand(1);
  kl::ServeOptions options;
  CLI::App* serve = app.add_subcommand("serve", "Serve a model over HTTP (OpenAI API) and gRPC");
  kl::add_serve_options(*serve, options);
  CLI11_PARSE(app, argc, argv);
  try {
    if (serve->parsed()) return kl::run_serve(options);
  } catch (const kl::Error& e) {
    std::fprintf(stderr, "klserve: error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "klserve: unexpected error: %s\n", e.what());
    return 1;
  }
  return 0;
}
