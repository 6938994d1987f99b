// The `klserve serve` command.
#pragma once

#include "server/main/serve_options.h"

namespace kl {

// Runs the server until SIGTERM/SIGINT; returns the process exit code. Throws kl::Error for a
// configuration that cannot be served (bad flags, checkpoint, tokenizer).
int run_serve(const ServeOptions& options);

}  // namespace kl
