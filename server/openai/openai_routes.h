// The OpenAI-compatible generation routes: POST /v1/completions, POST /v1/chat/completions,
// POST /tokenize, POST /detokenize (vLLM's shapes and error conventions, serving.md).
#pragma once

#include "server/http/http_server.h"
#include "server/serving/serving_context.h"

namespace kl::openai {

void add_openai_routes(http::Router& router, ServingContext& ctx);

}  // namespace kl::openai
