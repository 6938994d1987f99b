// The OpenAI error envelope as the generation routes produce it: ApiError (thrown while parsing,
// validating and submitting a request) and its HTTP and in-stream (SSE) forms, with vLLM's
// shape {"error": {"message", "type", "param", "code"}} and code = the HTTP status.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "server/http/http_types.h"

namespace kl::openai {

class ApiError : public std::runtime_error {
 public:
  ApiError(int status, const std::string& message, std::string param = "")
      : std::runtime_error(message), status_(status), param_(std::move(param)) {}
  int status() const { return status_; }
  const std::string& param() const { return param_; }
  // Extra response headers (Retry-After for 429).
  std::vector<std::pair<std::string, std::string>> headers;

 private:
  int status_;
  std::string param_;
};

// 400 naming `param` (the request field at fault).
template <typename... Args>
[[noreturn]] void fail_field(const std::string& param, fmt::format_string<Args...> f,
                             Args&&... args) {
  throw ApiError(400, fmt::format(f, std::forward<Args>(args)...), param);
}

// {"error": {...}} as http::error_response writes it, for errors inside an SSE stream or a body
// that is already under way.
nlohmann::json error_json(int status, const std::string& message, const std::string& param = "");
// http::error_response plus the error's extra headers.
http::Response to_response(const ApiError& e);
// JSON text that never throws on invalid UTF-8 (replaced by U+FFFD).
std::string dump_json(const nlohmann::json& j);

}  // namespace kl::openai
