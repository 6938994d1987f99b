// The asynchronous HTTP/1.1 server on Boost.Beast: routing, request limits, bearer auth,
// streaming with bounded per-connection buffers, idle/slow-reader timeouts, graceful stop.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "server/http/http_types.h"

namespace kl::http {

struct ServerOptions {
  std::string host = "0.0.0.0";
  uint16_t port = 8000;  // 0: pick a free port (tests); port() tells which
  int num_threads = 2;
  size_t max_body_bytes = 8 << 20;  // larger bodies get 413
  std::string api_key;              // non-empty: "Authorization: Bearer <key>" on all but /health
  size_t max_buffered_bytes = 1 << 20;     // per streaming connection, beyond which it is paused
  std::chrono::seconds write_timeout{60};  // a client that reads nothing this long is dropped
  std::chrono::seconds read_timeout{60};   // for the request itself
  size_t max_header_bytes = 64 << 10;      // request line + headers; beyond: 431
};

class Router {
 public:
  void add(const std::string& method, const std::string& path, Handler h);
  // The handler for (method, path); a 404/405 error response handler when none matches.
  // *status is 200 on a match, else 404 (no such path) or 405 (path known, method not).
  const Handler* find(const std::string& method, const std::string& path, int* status) const;
  // "GET, POST" for a known path (the Allow header of a 405), "" for an unknown one.
  std::string allowed_methods(const std::string& path) const;

 private:
  std::map<std::pair<std::string, std::string>, Handler> routes_;
};

class Server {
 public:
  Server(ServerOptions options, Router router);
  ~Server();  // stop()
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  void start();  // binds and listens; throws kl::Error naming the address on failure
  uint16_t port() const;
  // Stops accepting; open streams may finish until `grace` has passed, then everything closes
  // (their sources are cancelled). Idempotent; call it from a thread that is not an I/O thread.
  void stop(std::chrono::milliseconds grace = std::chrono::milliseconds(0));
  int num_open_connections() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace kl::http
