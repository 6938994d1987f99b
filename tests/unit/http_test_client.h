// A tiny blocking HTTP/1.1 client on raw POSIX sockets for the transport tests: it sends exact
// bytes (malformed ones too), parses Content-Length and chunked responses, and can stop reading
// (slow-reader tests) or vanish mid-stream.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace kl::test {

struct HttpReply {
  int status = 0;
  std::map<std::string, std::string> headers;  // names lower-cased
  std::string body;
  std::vector<std::string> chunks;  // one per HTTP chunk (chunked replies)
  bool chunked = false;
};

class HttpTestClient {
 public:
  // Connects to 127.0.0.1:port; rcvbuf > 0 sets SO_RCVBUF first (a small window for slow-reader
  // tests). Throws std::runtime_error when the connection fails.
  explicit HttpTestClient(uint16_t port, int rcvbuf = 0);
  ~HttpTestClient();
  HttpTestClient(const HttpTestClient&) = delete;
  HttpTestClient& operator=(const HttpTestClient&) = delete;

  // True when a connection to the port is refused (nobody listens).
  static bool refused(uint16_t port);

  void send(const std::string& bytes);
  // "GET <path> HTTP/1.1" with Host, the extra header lines ("Name: value\r\n" each) and a body.
  void send_request(const std::string& method, const std::string& path,
                    const std::string& extra_headers = "", const std::string& body = "");
  // Reads one whole response; nullopt on timeout or when the connection ends before it does.
  std::optional<HttpReply> read_reply(std::chrono::milliseconds timeout = std::chrono::seconds(5));
  // Reads just the status line and headers (a stream then continues with read_chunk()).
  std::optional<HttpReply> read_head(std::chrono::milliseconds timeout = std::chrono::seconds(5));
  // One chunk of a chunked body; "" for the last (zero-size) chunk; nullopt on timeout/EOF.
  std::optional<std::string> read_chunk(
      std::chrono::milliseconds timeout = std::chrono::seconds(5));
  // True when the server closes the connection within `timeout` (data before the close is
  // discarded).
  bool wait_closed(std::chrono::milliseconds timeout = std::chrono::seconds(5));
  void close();

 private:
  // Appends received bytes to buf_ until `pred` holds; false on timeout or EOF.
  template <typename Pred>
  bool fill_until(Pred pred, std::chrono::steady_clock::time_point until);
  bool read_line(std::string& line, std::chrono::steady_clock::time_point until);
  bool read_exact(size_t n, std::string& out, std::chrono::steady_clock::time_point until);

  int fd_ = -1;
  std::string buf_;
  bool eof_ = false;
};

}  // namespace kl::test
