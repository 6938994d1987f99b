// One HTTP/1.1 connection of the Server: reads requests under size and time limits, runs the
// route handler, and writes plain or chunked streaming responses under back-pressure. Internal to
// kl_http (it includes Asio/Beast, so only server/http/*.cpp include it).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

#include <spdlog/spdlog.h>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>

#include "server/http/http_server.h"

namespace kl::http {

namespace net = boost::asio;
namespace bhttp = boost::beast::http;
using tcp = net::ip::tcp;

class Session;

// What the sessions share with their Server, which outlives every session.
struct ServerShared {
  ServerOptions options;
  Router router;
  std::shared_ptr<spdlog::logger> log;
  std::atomic<bool> stopping{false};

  std::mutex mu;
  std::condition_variable cv;  // notified whenever a session ends
  // Open sessions (guarded by mu). The strong reference keeps a session alive while it waits
  // for its stream source with no I/O pending; Session::close() removes it.
  std::unordered_map<Session*, std::shared_ptr<Session>> sessions;
};

class Session : public std::enable_shared_from_this<Session> {
 public:
  // `socket` runs on its own strand: every member below is touched only from it.
  Session(ServerShared& shared, tcp::socket socket);
  ~Session();  // cancels a stream source that did not finish (only when the server stops)
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  void start();
  // No new requests: an idle connection closes now, a busy one after its response.
  void begin_shutdown();
  // Closes now (a stream still running is cancelled).
  void force_close();
  net::any_io_executor executor() { return socket_.get_executor(); }

 private:
  enum class State : uint8_t { kReading, kResponding, kLingering, kClosed };
  using Clock = std::chrono::steady_clock;

  void read_request();
  void on_header(boost::system::error_code ec);
  void on_read(boost::system::error_code ec);
  void dispatch(bhttp::request<bhttp::string_body>&& msg);
  HandlerResult run_handler(const Request& req);
  void send_plain(Response r);
  void send_error(int status, const std::string& message);
  void start_stream(StreamResponse s);
  std::string head(int status, const std::string& content_type,
                   const std::vector<std::pair<std::string, std::string>>& headers,
                   const std::string& length_or_chunked) const;
  // Pulls from the stream source while less than max_buffered_bytes is unsent.
  void pump();
  void wake();
  void flush();
  void write_some();
  void on_write(boost::system::error_code ec, size_t n);
  void finish_response();
  // While a stream waits for data, a pending read notices a client that went away.
  void watch_disconnect();
  void on_watch(boost::system::error_code ec, size_t n);
  // After refusing a request that may still be arriving: stop sending, read and discard for a
  // while, then close, so that the client sees our response rather than a reset.
  void linger();
  void drain();
  void close(const char* why);
  void log_request();
  size_t unsent() const { return pending_.size() + inflight_.size() - inflight_off_; }

  ServerShared& shared_;
  tcp::socket socket_;
  net::steady_timer read_timer_, write_timer_;
  uint64_t read_seq_ = 0, write_seq_ = 0;  // tell a stale timer expiry from a live one
  std::string remote_;
  State state_ = State::kReading;

  boost::beast::flat_buffer buffer_;
  std::optional<bhttp::request_parser<bhttp::string_body>> parser_;
  bool keep_alive_ = true;     // of the current response
  bool close_after_ = false;   // error responses, HTTP/1.0 streams, shutdown
  bool linger_after_ = false;  // the client may still be sending a request we refused
  bool http10_ = false;

  // Output: inflight_ is being written (stable while a write is pending); pending_ grows.
  std::string inflight_, pending_;
  size_t inflight_off_ = 0;
  bool writing_ = false;
  bool response_complete_ = false;  // the whole response is in pending_/inflight_

  std::unique_ptr<StreamSource> source_;
  bool source_done_ = false;
  // A stream whose head waits for its first bytes (StreamResponse::head_with_first_data).
  struct DeferredHead {
    int status = 200;
    std::string content_type;
    std::vector<std::pair<std::string, std::string>> headers;
  };
  std::optional<DeferredHead> deferred_head_;
  std::atomic<bool> wake_posted_{false};  // coalesces wake-ups (engine thread) into one post
  bool watching_ = false;
  bool read_after_watch_ = false;
  size_t lingered_bytes_ = 0;

  // For the request log line.
  std::string req_method_, req_target_;
  int resp_status_ = 0;
  size_t resp_bytes_ = 0;
  Clock::time_point req_start_;
};

}  // namespace kl::http
