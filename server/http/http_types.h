// The contract between the HTTP transport (server/http) and the route handlers (server/openai
// and the built-in routes): plain request/response values, and pull-based streaming sources so
// that the transport writes only as fast as the client reads (back-pressure) and no thread ever
// waits on a client.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <variant>
#include <vector>

namespace kl::http {

struct Request {
  std::string method;                          // "GET", "POST", ...
  std::string path;                            // without the query string
  std::string query;                           // after '?', undecoded
  std::map<std::string, std::string> headers;  // names lower-cased
  std::string body;
  std::string remote;  // peer address, for logs
};

struct Response {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  // extra headers (Retry-After, ...)
};

// A response produced over time (SSE, or one body that is ready only when generation ends).
// The transport calls pull() when it can write more; the source calls the wake-up function
// (from any thread, cheaply) when it has new data; cancel() tells the source the client is gone.
class StreamSource {
 public:
  struct Chunk {
    std::string data;   // bytes to write now (may be empty: nothing yet)
    bool done = false;  // no more data after this chunk
    // Only for a response whose head waits for its body (StreamResponse::head_with_first_data):
    // the status to send instead of the response's, e.g. 500 for a generation that failed.
    int status = 0;
  };
  virtual ~StreamSource() = default;
  virtual void set_wakeup(std::function<void()> wake) = 0;
  virtual Chunk pull(size_t max_bytes) = 0;
  virtual void cancel() = 0;
};

struct StreamResponse {
  int status = 200;
  std::string content_type = "text/event-stream";
  std::vector<std::pair<std::string, std::string>> headers;
  std::unique_ptr<StreamSource> source;
  // A body produced whole at the end (a non-streamed generation): the head goes out with the
  // first bytes, so a failure before then still reaches the client as its error status (the
  // first chunk's `status`) instead of a 200 with an error body.
  bool head_with_first_data = false;
};

using HandlerResult = std::variant<Response, StreamResponse>;
// Handlers run on the transport's I/O threads: they must not block (generation goes through a
// StreamSource). They may throw kl::Error for a 500 with the message.
using Handler = std::function<HandlerResult(const Request&)>;

// OpenAI error envelope: {"error": {"message", "type", "param", "code"}} with the status.
// `param` empty: "param": null; `code` is the status (as vLLM does).
Response error_response(int status, const std::string& message, const std::string& type,
                        const std::string& param = "");
// The same with the OpenAI SDK's type name for the status ("BadRequestError", "NotFoundError",
// "AuthenticationError", "RateLimitError", "InternalServerError", ...).
Response error_response(int status, const std::string& message);
const char* error_type_for_status(int status);

// True when `authorization` (the header's value) is "Bearer <api_key>"; the comparison takes the
// same time whatever the mismatch (no early exit), so the key cannot be probed by timing.
bool bearer_matches(const std::string& authorization, const std::string& api_key);

}  // namespace kl::http
