// The OpenAI error envelope and the bearer-key check shared by the HTTP routes (and usable by
// gRPC): small helpers with no Beast dependency.
#include "server/http/http_types.h"

#include <nlohmann/json.hpp>

namespace kl::http {

Response error_response(int status, const std::string& message, const std::string& type,
                        const std::string& param) {
  nlohmann::json err = {{"message", message},
                        {"type", type},
                        {"param", param.empty() ? nlohmann::json(nullptr) : nlohmann::json(param)},
                        {"code", status}};
  Response r;
  r.status = status;
  r.content_type = "application/json";
  // Replace invalid UTF-8 (a message may quote client bytes) instead of throwing.
  r.body =
      nlohmann::json{{"error", err}}.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  return r;
}

Response error_response(int status, const std::string& message) {
  return error_response(status, message, error_type_for_status(status));
}

const char* error_type_for_status(int status) {
  switch (status) {
    case 400:
      return "BadRequestError";
    case 401:
      return "AuthenticationError";
    case 403:
      return "PermissionDeniedError";
    case 404:
      return "NotFoundError";
    case 405:
      return "MethodNotAllowedError";
    case 408:
      return "RequestTimeoutError";
    case 409:
      return "ConflictError";
    case 413:
      return "RequestTooLargeError";
    case 422:
      return "UnprocessableEntityError";
    case 429:
      return "RateLimitError";
    case 431:
      return "RequestHeaderFieldsTooLargeError";
    case 501:
      return "NotImplementedError";
    case 503:
      return "ServiceUnavailableError";
    default:
      return status >= 500 ? "InternalServerError" : "BadRequestError";
  }
}

bool bearer_matches(const std::string& authorization, const std::string& api_key) {
  static constexpr char kScheme[] = "bearer ";
  constexpr size_t kSchemeLen = sizeof(kScheme) - 1;
  // The scheme is public: checking it with an early exit leaks nothing about the key.
  if (authorization.size() < kSchemeLen) return false;
  for (size_t i = 0; i < kSchemeLen; ++i) {
    char c = authorization[i];
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    if (c != kScheme[i]) return false;
  }
  const char* token = authorization.data() + kSchemeLen;
  const size_t token_len = authorization.size() - kSchemeLen;
  // Every byte of the key is visited whatever the token holds; only the key's length (not its
  // content) shapes the timing.
  unsigned diff = token_len != api_key.size() ? 1u : 0u;
  for (size_t i = 0; i < api_key.size(); ++i) {
    const unsigned char t = i < token_len ? static_cast<unsigned char>(token[i]) : 0u;
    diff |= t ^ static_cast<unsigned char>(api_key[i]);
  }
  // An empty configured key never matches (the server then does not check at all).
  return !api_key.empty() && diff == 0;
}

}  // namespace kl::http
