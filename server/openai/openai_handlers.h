// The OpenAI route handlers as plain functions of (context, request), so that tests can drive
// them without a transport: parse and validate, tokenize or render the chat, check the context
// length, submit to the engine, and hand back a GenerationSource (or an error envelope).
#pragma once

#include "server/http/http_types.h"
#include "server/serving/serving_context.h"

namespace kl::openai {

// POST /v1/completions
http::HandlerResult handle_completions(ServingContext& ctx, const http::Request& req);
// POST /v1/chat/completions
http::HandlerResult handle_chat_completions(ServingContext& ctx, const http::Request& req);
// POST /tokenize: {"prompt"} or {"messages"[, "tools"]} -> {"count", "max_model_len", "tokens",
// "token_strs"}
http::Response handle_tokenize(ServingContext& ctx, const http::Request& req);
// POST /detokenize: {"tokens"} -> {"prompt"}
http::Response handle_detokenize(ServingContext& ctx, const http::Request& req);

}  // namespace kl::openai
