// The Server: route table, listening socket and accept loop, the I/O thread pool, and graceful
// stop (stop accepting, let streams finish within the grace period, then close everything).
#include "server/http/http_server.h"

#include <future>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>

#include "engine/core/error.h"
#include "engine/core/log.h"
#include "server/http/http_session.h"

namespace kl::http {

using boost::system::error_code;

// ---- Router

void Router::add(const std::string& method, const std::string& path, Handler h) {
  routes_[{path, method}] = std::move(h);
}

const Handler* Router::find(const std::string& method, const std::string& path, int* status) const {
  // The two static handlers answer for callers that call what find() returns without looking
  // at the status.
  static const Handler kNotFound = [](const Request& r) -> HandlerResult {
    return error_response(404, fmt::format("no route for {} {}", r.method, r.path));
  };
  static const Handler kNotAllowed = [](const Request& r) -> HandlerResult {
    return error_response(405, fmt::format("method {} is not allowed on {}", r.method, r.path));
  };
  auto it = routes_.find({path, method});
  if (it != routes_.end()) {
    if (status) *status = 200;
    return &it->second;
  }
  // Keys are (path, method): every route of a path is adjacent.
  auto same_path = routes_.lower_bound({path, std::string()});
  const bool path_known = same_path != routes_.end() && same_path->first.first == path;
  if (status) *status = path_known ? 405 : 404;
  return path_known ? &kNotAllowed : &kNotFound;
}

std::string Router::allowed_methods(const std::string& path) const {
  std::string out;
  for (auto it = routes_.lower_bound({path, std::string()});
       it != routes_.end() && it->first.first == path; ++it) {
    if (!out.empty()) out += ", ";
    out += it->first.second;
  }
  return out;
}

// ---- Server

struct Server::Impl {
  explicit Impl(ServerOptions options, Router router)
      : ioc(std::max(1, options.num_threads)),
        accept_strand(net::make_strand(ioc)),
        acceptor(accept_strand),
        accept_retry(accept_strand) {
    shared.options = std::move(options);
    shared.router = std::move(router);
    shared.log = kl::logger("server");
  }

  void do_accept();
  void wait_sessions(std::chrono::steady_clock::time_point until);

  ServerShared shared;  // first: sessions still referenced by ioc's handlers use it to the end
  net::io_context ioc;
  std::optional<net::executor_work_guard<net::io_context::executor_type>> work;
  net::strand<net::io_context::executor_type> accept_strand;
  tcp::acceptor acceptor;          // on accept_strand
  net::steady_timer accept_retry;  // on accept_strand
  std::vector<std::thread> threads;
  std::atomic<uint16_t> port{0};
  std::mutex state_mu;  // start/stop
  bool started = false, stopped = false;
};

void Server::Impl::do_accept() {
  acceptor.async_accept(net::make_strand(ioc), [this](error_code ec, tcp::socket socket) {
    if (!acceptor.is_open() || shared.stopping) return;
    if (ec) {
      // Out of descriptors or a transient network error: keep serving the open connections
      // and try again shortly instead of spinning.
      shared.log->warn("accept failed: {}", ec.message());
      accept_retry.expires_after(std::chrono::milliseconds(100));
      accept_retry.async_wait([this](error_code e) {
        if (!e) do_accept();
      });
      return;
    }
    auto session = std::make_shared<Session>(shared, std::move(socket));
    {
      std::lock_guard<std::mutex> lock(shared.mu);
      shared.sessions.emplace(session.get(), session);
    }
    net::post(session->executor(), [session] { session->start(); });
    do_accept();
  });
}

void Server::Impl::wait_sessions(std::chrono::steady_clock::time_point until) {
  std::unique_lock<std::mutex> lock(shared.mu);
  shared.cv.wait_until(lock, until, [&] { return shared.sessions.empty(); });
}

Server::Server(ServerOptions options, Router router)
    : impl_(std::make_unique<Impl>(std::move(options), std::move(router))) {}

Server::~Server() {
  stop();
}

void Server::start() {
  std::lock_guard<std::mutex> lock(impl_->state_mu);
  KL_CHECK(!impl_->started, "HTTP server started twice");
  const ServerOptions& opts = impl_->shared.options;
  const std::string where = fmt::format("{}:{}", opts.host, opts.port);
  try {
    tcp::resolver resolver(impl_->ioc);
    const auto results = resolver.resolve(opts.host, std::to_string(opts.port),
                                          tcp::resolver::passive | tcp::resolver::numeric_service);
    if (results.empty()) fail("cannot listen on {}: the host does not resolve", where);
    const tcp::endpoint ep = results.begin()->endpoint();
    tcp::acceptor& a = impl_->acceptor;
    a.open(ep.protocol());
    a.set_option(net::socket_base::reuse_address(true));
    a.bind(ep);
    a.listen(net::socket_base::max_listen_connections);
    impl_->port = a.local_endpoint().port();
  } catch (const boost::system::system_error& e) {
    fail("cannot listen on {}: {}", where, e.code().message());
  }
  impl_->started = true;
  impl_->work.emplace(impl_->ioc.get_executor());
  net::post(impl_->accept_strand, [impl = impl_.get()] { impl->do_accept(); });
  const int n = std::max(1, opts.num_threads);
  for (int i = 0; i < n; ++i) {
    impl_->threads.emplace_back([impl = impl_.get()] {
      for (;;) {
        try {
          impl->ioc.run();
          return;
        } catch (const std::exception& e) {
          // A handler is not expected to throw past the session; log and keep the pool alive.
          impl->shared.log->error("HTTP I/O thread: {}", e.what());
        }
      }
    });
  }
  impl_->shared.log->info("HTTP listening on {}:{}", opts.host, impl_->port.load());
}

uint16_t Server::port() const {
  return impl_->port.load();
}

int Server::num_open_connections() const {
  std::lock_guard<std::mutex> lock(impl_->shared.mu);
  return static_cast<int>(impl_->shared.sessions.size());
}

void Server::stop(std::chrono::milliseconds grace) {
  std::lock_guard<std::mutex> lock(impl_->state_mu);
  Impl& im = *impl_;
  if (!im.started || im.stopped) return;
  im.stopped = true;
  im.shared.stopping = true;
  const auto t0 = std::chrono::steady_clock::now();

  // 1. No new connections.
  std::promise<void> closed;
  net::post(im.accept_strand, [&] {
    error_code ec;
    im.acceptor.close(ec);
    im.accept_retry.cancel();
    closed.set_value();
  });
  closed.get_future().wait();

  // 2. Idle connections close now; busy ones after their response.
  auto for_each_session = [&](auto fn) {
    std::vector<std::shared_ptr<Session>> all;
    {
      std::lock_guard<std::mutex> l(im.shared.mu);
      for (auto& [ptr, s] : im.shared.sessions) all.push_back(s);
    }
    for (auto& s : all) net::post(s->executor(), [s, fn] { fn(*s); });
  };
  for_each_session([](Session& s) { s.begin_shutdown(); });
  im.wait_sessions(t0 + grace);

  // 3. Past the grace period: close the rest (their streams are cancelled).
  for_each_session([](Session& s) { s.force_close(); });
  im.wait_sessions(std::chrono::steady_clock::now() + std::chrono::seconds(5));

  im.work.reset();
  im.ioc.stop();
  for (auto& t : im.threads) t.join();
  im.threads.clear();
  std::vector<std::shared_ptr<Session>> left;
  {
    std::lock_guard<std::mutex> l(im.shared.mu);
    for (auto& [ptr, s] : im.shared.sessions) left.push_back(std::move(s));
    im.shared.sessions.clear();
  }
  if (!left.empty()) im.shared.log->warn("{} HTTP connections did not close in time", left.size());
  im.shared.log->info(
      "HTTP server stopped ({} ms)",
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0)
          .count());
}

}  // namespace kl::http
