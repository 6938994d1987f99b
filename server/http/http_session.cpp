// Session: one connection's request/response cycle (see http_session.h): parse limits, auth and
// routing, plain and chunked streaming responses with back-pressure, read and write timeouts.
#include "server/http/http_session.h"

#include <algorithm>
#include <cctype>
#include <limits>

#include <fmt/format.h>
#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/status.hpp>

#include "engine/core/error.h"

namespace kl::http {
namespace {

using boost::system::error_code;

// One write operation's size: the write timeout then measures lack of progress, not the time a
// large body takes.
constexpr size_t kWriteSlice = 64 << 10;
constexpr size_t kWatchBytes = 4 << 10;
// Bytes a client may send ahead (a pipelined request) while we stream; beyond, we stop reading.
constexpr size_t kMaxReadAhead = 64 << 10;
constexpr auto kLingerTime = std::chrono::seconds(2);
constexpr size_t kMaxLingerBytes = 64 << 20;

// Beast's parse errors mean a malformed request; anything else (EOF, reset, our own cancel, a
// message cut short) means the client or we closed the connection.
bool client_gone(const error_code& ec) {
  static const auto& http_category = bhttp::make_error_code(bhttp::error::bad_method).category();
  return ec.category() != http_category || ec == bhttp::error::end_of_stream ||
         ec == bhttp::error::partial_message;
}

// A handler-supplied header that would let its value split the response is dropped.
bool header_safe(const std::string& s) {
  return s.find_first_of("\r\n") == std::string::npos;
}

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

}  // namespace

Session::Session(ServerShared& shared, tcp::socket socket)
    : shared_(shared),
      socket_(std::move(socket)),
      read_timer_(socket_.get_executor()),
      write_timer_(socket_.get_executor()) {
  error_code ec;
  const auto ep = socket_.remote_endpoint(ec);
  remote_ = ec ? std::string("?") : fmt::format("{}:{}", ep.address().to_string(), ep.port());
  // SSE events are small and latency matters more than packet count.
  socket_.set_option(tcp::no_delay(true), ec);
}

Session::~Session() {
  if (source_ && !source_done_) source_->cancel();
}

void Session::start() {
  if (shared_.stopping) {
    close("server stopping");
    return;
  }
  read_request();
}

void Session::begin_shutdown() {
  close_after_ = true;
  if (state_ == State::kReading) close("server stopping");
}

void Session::force_close() {
  close("server stopped");
}

void Session::read_request() {
  state_ = State::kReading;
  parser_.emplace();
  parser_->header_limit(static_cast<uint32_t>(
      std::min<size_t>(shared_.options.max_header_bytes, std::numeric_limits<uint32_t>::max())));
  parser_->body_limit(static_cast<uint64_t>(shared_.options.max_body_bytes));
  const uint64_t seq = ++read_seq_;
  read_timer_.expires_after(shared_.options.read_timeout);
  read_timer_.async_wait([self = shared_from_this(), seq](error_code ec) {
    if (ec || seq != self->read_seq_ || self->state_ != State::kReading) return;
    self->close("read timeout");
  });
  bhttp::async_read_header(
      socket_, buffer_, *parser_,
      [self = shared_from_this()](error_code ec, size_t) { self->on_header(ec); });
}

void Session::on_header(error_code ec) {
  if (ec || state_ != State::kReading || parser_->is_done()) {
    on_read(ec);
    return;
  }
  auto read_body = [self = shared_from_this()] {
    bhttp::async_read(self->socket_, self->buffer_, *self->parser_,
                      [self](error_code e, size_t) { self->on_read(e); });
  };
  // A client that sent "Expect: 100-continue" (curl, for larger bodies) waits for this before
  // sending the body; a body over the limit was already refused from its Content-Length.
  const auto expect = parser_->get()[bhttp::field::expect];
  if (boost::beast::iequals(expect, "100-continue")) {
    static const char kContinue[] = "HTTP/1.1 100 Continue\r\n\r\n";
    net::async_write(socket_, net::buffer(kContinue, sizeof(kContinue) - 1),
                     [self = shared_from_this(), read_body](error_code e, size_t) {
                       if (e || self->state_ != State::kReading) {
                         self->on_read(e ? e : net::error::operation_aborted);
                         return;
                       }
                       read_body();
                     });
    return;
  }
  read_body();
}

void Session::on_read(error_code ec) {
  ++read_seq_;
  read_timer_.cancel();
  if (state_ != State::kReading) return;  // closed meanwhile
  if (ec) {
    if (client_gone(ec)) {
      close(nullptr);
      return;
    }
    state_ = State::kResponding;
    req_start_ = Clock::now();
    req_method_ = "-";
    req_target_ = "-";
    if (parser_->is_header_done()) {
      req_method_ = std::string(parser_->get().method_string());
      req_target_ = std::string(parser_->get().target());
    }
    close_after_ = true;
    linger_after_ = true;
    if (ec == bhttp::error::body_limit) {
      send_error(413, fmt::format("request body is larger than the limit of {} bytes",
                                  shared_.options.max_body_bytes));
    } else if (ec == bhttp::error::header_limit) {
      send_error(431, fmt::format("request headers are larger than the limit of {} bytes",
                                  shared_.options.max_header_bytes));
    } else {
      send_error(400, fmt::format("malformed HTTP request: {}", ec.message()));
    }
    return;
  }
  dispatch(parser_->release());
}

void Session::dispatch(bhttp::request<bhttp::string_body>&& msg) {
  state_ = State::kResponding;
  req_start_ = Clock::now();
  Request req;
  req.method = std::string(msg.method_string());
  const std::string target(msg.target());
  const size_t q = target.find('?');
  req.path = target.substr(0, q);
  if (q != std::string::npos) req.query = target.substr(q + 1);
  for (const auto& f : msg) {
    std::string name = lower(std::string(f.name_string()));
    auto [it, inserted] = req.headers.try_emplace(std::move(name), std::string(f.value()));
    if (!inserted) it->second += ", " + std::string(f.value());  // repeated header: a list
  }
  req.body = std::move(msg.body());
  req.remote = remote_;
  req_method_ = req.method;
  req_target_ = target;
  http10_ = msg.version() < 11;
  keep_alive_ = msg.keep_alive() && !shared_.stopping;
  close_after_ = !keep_alive_;

  HandlerResult res = run_handler(req);
  if (auto* r = std::get_if<Response>(&res)) {
    send_plain(std::move(*r));
  } else {
    start_stream(std::move(std::get<StreamResponse>(res)));
  }
}

HandlerResult Session::run_handler(const Request& req) {
  const ServerOptions& opts = shared_.options;
  // /health stays open so that probes need no secret; every other path, known or not, needs
  // the key (deciding on the exact path: no prefix or normalisation tricks).
  if (!opts.api_key.empty() && req.path != "/health") {
    auto it = req.headers.find("authorization");
    if (it == req.headers.end() || !bearer_matches(it->second, opts.api_key)) {
      Response r = error_response(401, "invalid or missing API key");
      r.headers.emplace_back("WWW-Authenticate", "Bearer");
      return r;
    }
  }
  int status = 0;
  const Handler* handler = shared_.router.find(req.method, req.path, &status);
  if (status == 404 || handler == nullptr) {
    return error_response(404, fmt::format("no route for {} {}", req.method, req.path));
  }
  if (status == 405) {
    Response r =
        error_response(405, fmt::format("method {} is not allowed on {}", req.method, req.path));
    r.headers.emplace_back("Allow", shared_.router.allowed_methods(req.path));
    return r;
  }
  try {
    return (*handler)(req);
  } catch (const kl::Error& e) {
    shared_.log->warn("{} {} {}: {}", remote_, req.method, req.path, e.what());
    return error_response(500, e.what());
  } catch (const std::exception& e) {
    shared_.log->error("{} {} {}: unexpected exception: {}", remote_, req.method, req.path,
                       e.what());
    return error_response(500, "internal server error");
  } catch (...) {
    shared_.log->error("{} {} {}: unknown exception", remote_, req.method, req.path);
    return error_response(500, "internal server error");
  }
}

std::string Session::head(int status, const std::string& content_type,
                          const std::vector<std::pair<std::string, std::string>>& headers,
                          const std::string& framing) const {
  const auto reason = bhttp::obsolete_reason(bhttp::int_to_status(static_cast<unsigned>(status)));
  std::string h =
      fmt::format("HTTP/1.1 {} {}\r\n", status, std::string_view(reason.data(), reason.size()));
  if (header_safe(content_type)) h += fmt::format("Content-Type: {}\r\n", content_type);
  for (const auto& [name, value] : headers) {
    if (!header_safe(name) || !header_safe(value) || name.empty()) {
      shared_.log->warn("dropping a response header with CR/LF: {}", name);
      continue;
    }
    h += fmt::format("{}: {}\r\n", name, value);
  }
  h += framing;
  h += (close_after_ || shared_.stopping) ? "Connection: close\r\n\r\n"
                                          : "Connection: keep-alive\r\n\r\n";
  return h;
}

void Session::send_plain(Response r) {
  resp_status_ = r.status;
  resp_bytes_ = r.body.size();
  pending_ += head(r.status, r.content_type, r.headers,
                   fmt::format("Content-Length: {}\r\n", r.body.size()));
  pending_ += r.body;
  response_complete_ = true;
  flush();
}

void Session::send_error(int status, const std::string& message) {
  send_plain(error_response(status, message));
}

void Session::start_stream(StreamResponse s) {
  if (!s.source) {
    send_plain(error_response(500, "the handler returned a stream without a source"));
    return;
  }
  resp_status_ = s.status;
  resp_bytes_ = 0;
  source_ = std::move(s.source);
  source_done_ = false;
  response_complete_ = false;
  // HTTP/1.0 has no chunked encoding: the body ends where the connection does.
  if (http10_) close_after_ = true;
  const bool has_cache_control = std::any_of(s.headers.begin(), s.headers.end(), [](const auto& h) {
    return lower(h.first) == "cache-control";
  });
  if (!has_cache_control) s.headers.emplace_back("Cache-Control", "no-cache");
  deferred_head_.reset();
  if (s.head_with_first_data)
    deferred_head_ = DeferredHead{s.status, std::move(s.content_type), std::move(s.headers)};
  else
    pending_ += head(s.status, s.content_type, s.headers,
                     http10_ ? std::string() : std::string("Transfer-Encoding: chunked\r\n"));
  std::weak_ptr<Session> weak = shared_from_this();
  source_->set_wakeup([weak] {
    if (auto self = weak.lock()) self->wake();
  });
  watch_disconnect();
  pump();
}

void Session::wake() {
  // Called from the engine thread: touch only the flag, and post the rest onto our strand.
  if (wake_posted_.exchange(true)) return;
  net::post(socket_.get_executor(), [self = shared_from_this()] {
    self->wake_posted_ = false;
    self->pump();
  });
}

void Session::pump() {
  if (state_ != State::kResponding || !source_ || source_done_) return;
  const size_t limit = std::max<size_t>(shared_.options.max_buffered_bytes, 1);
  try {
    while (unsent() < limit) {
      StreamSource::Chunk c = source_->pull(limit - unsent());
      if (deferred_head_ && (!c.data.empty() || c.done)) {
        if (c.status != 0) resp_status_ = deferred_head_->status = c.status;
        pending_ +=
            head(deferred_head_->status, deferred_head_->content_type, deferred_head_->headers,
                 http10_ ? std::string() : std::string("Transfer-Encoding: chunked\r\n"));
        deferred_head_.reset();
      }
      if (!c.data.empty()) {
        resp_bytes_ += c.data.size();
        if (http10_) {
          pending_ += c.data;
        } else {
          pending_ += fmt::format("{:x}\r\n", c.data.size());
          pending_ += c.data;
          pending_ += "\r\n";
        }
      }
      if (c.done) {
        source_done_ = true;
        response_complete_ = true;
        if (!http10_) pending_ += "0\r\n\r\n";
        break;
      }
      if (c.data.empty()) break;  // nothing now: the source's wake-up brings us back
    }
  } catch (const std::exception& e) {
    shared_.log->error("{} {} {}: stream source failed: {}", remote_, req_method_, req_target_,
                       e.what());
    if (deferred_head_) {  // nothing sent yet: the client still gets a status
      source_->cancel();
      source_done_ = true;
      deferred_head_.reset();
      close_after_ = true;
      send_plain(error_response(500, "internal server error"));
      return;
    }
    // Mid-stream there is no status left to send: end the connection.
    close(nullptr);
    return;
  }
  flush();
}

void Session::flush() {
  if (writing_ || state_ == State::kClosed) return;
  if (pending_.empty()) {
    if (response_complete_) finish_response();
    return;
  }
  inflight_.swap(pending_);
  pending_.clear();
  inflight_off_ = 0;
  write_some();
}

void Session::write_some() {
  writing_ = true;
  const uint64_t seq = ++write_seq_;
  write_timer_.expires_after(shared_.options.write_timeout);
  write_timer_.async_wait([self = shared_from_this(), seq](error_code ec) {
    if (ec || seq != self->write_seq_ || !self->writing_) return;
    self->close("the client stopped reading (write timeout)");
  });
  const size_t n = std::min(kWriteSlice, inflight_.size() - inflight_off_);
  socket_.async_write_some(
      net::buffer(inflight_.data() + inflight_off_, n),
      [self = shared_from_this()](error_code ec, size_t written) { self->on_write(ec, written); });
}

void Session::on_write(error_code ec, size_t n) {
  writing_ = false;
  ++write_seq_;
  if (state_ == State::kClosed) return;
  if (ec) {
    close("write failed (client went away)");
    return;
  }
  inflight_off_ += n;
  if (inflight_off_ < inflight_.size()) {
    write_some();
    return;
  }
  inflight_.clear();
  inflight_off_ = 0;
  if (source_ && !source_done_) {
    pump();
  } else {
    flush();
  }
}

void Session::finish_response() {
  log_request();
  source_.reset();
  source_done_ = false;
  deferred_head_.reset();
  response_complete_ = false;
  write_timer_.cancel();
  if (linger_after_) {
    linger();
    return;
  }
  if (close_after_ || shared_.stopping) {
    error_code ec;
    socket_.shutdown(tcp::socket::shutdown_send, ec);
    close(nullptr);
    return;
  }
  if (watching_) {
    // The next request is read by Beast's parser; the watch read must end first.
    read_after_watch_ = true;
    error_code ec;
    socket_.cancel(ec);
    return;
  }
  read_request();
}

void Session::watch_disconnect() {
  if (watching_ || state_ != State::kResponding || buffer_.size() >= kMaxReadAhead) return;
  watching_ = true;
  socket_.async_read_some(
      buffer_.prepare(kWatchBytes),
      [self = shared_from_this()](error_code ec, size_t n) { self->on_watch(ec, n); });
}

void Session::on_watch(error_code ec, size_t n) {
  watching_ = false;
  if (state_ == State::kClosed) return;
  if (!ec) buffer_.commit(n);  // a pipelined request: kept for the parser
  if (read_after_watch_) {
    read_after_watch_ = false;
    if (ec && ec != net::error::operation_aborted) {
      close(nullptr);
    } else {
      read_request();
    }
    return;
  }
  if (ec) {
    close("client went away mid-response");
    return;
  }
  watch_disconnect();
}

void Session::linger() {
  state_ = State::kLingering;
  error_code ec;
  socket_.shutdown(tcp::socket::shutdown_send, ec);
  const uint64_t seq = ++read_seq_;
  read_timer_.expires_after(kLingerTime);
  read_timer_.async_wait([self = shared_from_this(), seq](error_code e) {
    if (e || seq != self->read_seq_) return;
    self->close(nullptr);
  });
  buffer_.clear();
  drain();
}

void Session::drain() {
  // prepare() without commit(): the same scratch space is reused for every discarded read.
  socket_.async_read_some(buffer_.prepare(16 << 10),
                          [self = shared_from_this()](error_code ec, size_t n) {
                            if (ec || self->state_ != State::kLingering) {
                              self->close(nullptr);
                              return;
                            }
                            self->lingered_bytes_ += n;
                            if (self->lingered_bytes_ > kMaxLingerBytes) {
                              self->close(nullptr);
                              return;
                            }
                            self->drain();
                          });
}

void Session::close(const char* why) {
  if (state_ == State::kClosed) return;
  if (state_ == State::kResponding && why != nullptr) {
    shared_.log->debug("{} \"{} {}\" {} interrupted: {}", remote_, req_method_, req_target_,
                       resp_status_, why);
  } else if (why != nullptr) {
    shared_.log->debug("{} closed: {}", remote_, why);
  }
  state_ = State::kClosed;
  ++read_seq_;
  ++write_seq_;
  read_timer_.cancel();
  write_timer_.cancel();
  if (source_) {
    if (!source_done_) source_->cancel();
    source_.reset();
  }
  error_code ec;
  socket_.shutdown(tcp::socket::shutdown_both, ec);
  socket_.close(ec);
  std::shared_ptr<Session> ref;  // released after the lock; the caller holds another one
  {
    std::lock_guard<std::mutex> lock(shared_.mu);
    auto it = shared_.sessions.find(this);
    if (it != shared_.sessions.end()) {
      ref = std::move(it->second);
      shared_.sessions.erase(it);
    }
  }
  shared_.cv.notify_all();
}

void Session::log_request() {
  if (!shared_.log->should_log(spdlog::level::debug)) return;
  const double ms = std::chrono::duration<double, std::milli>(Clock::now() - req_start_).count();
  shared_.log->debug("{} \"{} {}\" {} {}B {:.1f}ms", remote_, req_method_, req_target_,
                     resp_status_, resp_bytes_, ms);
}

}  // namespace kl::http
