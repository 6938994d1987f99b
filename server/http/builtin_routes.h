// Routes that are not the OpenAI generation API: GET /health (200 ready; 503 loading, draining or
// failed), GET /metrics (Prometheus), GET /version, GET /v1/models.
#pragma once

#include "server/http/http_server.h"
#include "server/serving/serving_context.h"

namespace kl::http {

void add_builtin_routes(Router& router, ServingContext& ctx);

}  // namespace kl::http
