// Registration of the OpenAI generation and tokenizer routes on the HTTP router.
#include "server/openai/openai_routes.h"

#include "server/openai/openai_handlers.h"

namespace kl::openai {

void add_openai_routes(http::Router& router, ServingContext& ctx) {
  router.add("POST", "/v1/completions",
             [&ctx](const http::Request& r) { return handle_completions(ctx, r); });
  router.add("POST", "/v1/chat/completions",
             [&ctx](const http::Request& r) { return handle_chat_completions(ctx, r); });
  router.add("POST", "/tokenize", [&ctx](const http::Request& r) -> http::HandlerResult {
    return handle_tokenize(ctx, r);
  });
  router.add("POST", "/detokenize", [&ctx](const http::Request& r) -> http::HandlerResult {
    return handle_detokenize(ctx, r);
  });
}

}  // namespace kl::openai
