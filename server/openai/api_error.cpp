// OpenAI error envelope: the JSON and HTTP forms of ApiError.
#include "server/openai/api_error.h"

namespace kl::openai {

nlohmann::json error_json(int status, const std::string& message, const std::string& param) {
  nlohmann::json e = {{"message", message},
                      {"type", http::error_type_for_status(status)},
                      {"param", param.empty() ? nlohmann::json(nullptr) : nlohmann::json(param)},
                      {"code", status}};
  return {{"error", std::move(e)}};
}

http::Response to_response(const ApiError& e) {
  http::Response r = http::error_response(e.status(), e.what(),
                                          http::error_type_for_status(e.status()), e.param());
  r.headers = e.headers;
  return r;
}

std::string dump_json(const nlohmann::json& j) {
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace kl::openai
