// The HTTP transport against a raw-socket client: routing, limits, auth, keep-alive, malformed
// requests, handler exceptions, and the streaming path (chunked order, back-pressure with a
// reader that never reads, disconnects, graceful stop).
#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>
#include <thread>

#include "engine/core/error.h"
#include "http_test_client.h"
#include "http_test_source.h"
#include "server/http/http_server.h"

using namespace kl;
using namespace kl::http;
using kl::test::HttpTestClient;
using kl::test::SourceState;
using namespace std::chrono_literals;

namespace {

template <typename Pred>
bool wait_for(Pred p, std::chrono::milliseconds limit = 5000ms) {
  const auto until = std::chrono::steady_clock::now() + limit;
  while (!p()) {
    if (std::chrono::steady_clock::now() > until) return false;
    std::this_thread::sleep_for(2ms);
  }
  return true;
}

// The routes every test uses; /stream serves whichever SourceState the test put in `next`.
struct TestServer {
  explicit TestServer(ServerOptions o = {}) {
    o.host = "127.0.0.1";
    o.port = 0;
    Router r;
    r.add("GET", "/a", [](const Request&) -> HandlerResult {
      return Response{200, "text/plain", "hello", {}};
    });
    r.add("POST", "/echo", [](const Request& q) -> HandlerResult {
      return Response{200, "text/plain", std::to_string(q.body.size()), {}};
    });
    r.add("GET", "/throw", [](const Request&) -> HandlerResult { throw Error("boom at /throw"); });
    r.add("GET", "/throw_std",
          [](const Request&) -> HandlerResult { throw std::runtime_error("secret detail"); });
    r.add("GET", "/stream", [this](const Request&) -> HandlerResult {
      StreamResponse s;
      s.source = std::make_unique<kl::test::TestSource>(next);
      return s;
    });
    server = std::make_unique<Server>(o, std::move(r));
    server->start();
    port = server->port();
  }
  std::shared_ptr<SourceState> next = std::make_shared<SourceState>();
  std::unique_ptr<Server> server;
  uint16_t port = 0;
};

nlohmann::json error_of(const kl::test::HttpReply& r) {
  auto j = nlohmann::json::parse(r.body);
  REQUIRE(j.contains("error"));
  return j["error"];
}

}  // namespace

TEST_CASE("http: routing gives 404 for an unknown path and 405 for a wrong method") {
  TestServer ts;
  HttpTestClient c(ts.port);
  c.send_request("GET", "/a");
  auto r = c.read_reply();
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK(r->body == "hello");

  c.send_request("GET", "/nope?x=1");
  r = c.read_reply();
  REQUIRE(r);
  CHECK(r->status == 404);
  CHECK(r->headers["content-type"] == "application/json");
  auto e = error_of(*r);
  CHECK(e["code"] == 404);
  CHECK(e["type"] == "NotFoundError");
  CHECK(e["param"].is_null());
  CHECK(e["message"].get<std::string>().find("/nope") != std::string::npos);

  c.send_request("POST", "/a", "", "x");
  r = c.read_reply();
  REQUIRE(r);
  CHECK(r->status == 405);
  CHECK(r->headers["allow"] == "GET");
  CHECK(error_of(*r)["code"] == 405);

  // The router on its own: find() reports the status and still returns a callable handler.
  Router router;
  router.add("GET", "/x", [](const Request&) -> HandlerResult { return Response{}; });
  int status = 0;
  CHECK(router.find("GET", "/x", &status) != nullptr);
  CHECK(status == 200);
  const Handler* h = router.find("DELETE", "/x", &status);
  CHECK(status == 405);
  REQUIRE(h != nullptr);
  CHECK(std::get<Response>((*h)(Request{"DELETE", "/x", "", {}, "", ""})).status == 405);
  router.find("GET", "/y", &status);
  CHECK(status == 404);
}

TEST_CASE("http: a body above max_body_bytes gets 413 and the server goes on") {
  ServerOptions o;
  o.max_body_bytes = 1024;
  TestServer ts(o);
  {
    HttpTestClient c(ts.port);
    c.send_request("POST", "/echo", "", std::string(1000, 'a'));
    auto r = c.read_reply();
    REQUIRE(r);
    CHECK(r->status == 200);
    CHECK(r->body == "1000");
  }
  SECTION("declared by Content-Length: refused before the body is read") {
    HttpTestClient c(ts.port);
    c.send("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\n" +
           std::string(4096, 'a'));
    auto r = c.read_reply();
    REQUIRE(r);
    CHECK(r->status == 413);
    CHECK(r->headers["connection"] == "close");
    CHECK(error_of(*r)["code"] == 413);
    CHECK(c.wait_closed(4000ms));
  }
  SECTION("chunked upload that grows past the limit") {
    HttpTestClient c(ts.port);
    std::string req = "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
    for (int i = 0; i < 4; ++i) req += "200\r\n" + std::string(512, 'b') + "\r\n";
    req += "0\r\n\r\n";
    c.send(req);
    auto r = c.read_reply();
    REQUIRE(r);
    CHECK(r->status == 413);
  }
  HttpTestClient c2(ts.port);
  c2.send_request("GET", "/a");
  auto r = c2.read_reply();
  REQUIRE(r);
  CHECK(r->status == 200);
}

TEST_CASE("http: Expect: 100-continue is answered before the body is sent") {
  ServerOptions o;
  o.max_body_bytes = 1024;
  TestServer ts(o);
  HttpTestClient c(ts.port);
  c.send("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
  auto cont = c.read_head();
  REQUIRE(cont);
  CHECK(cont->status == 100);
  c.send("hello");
  auto r = c.read_reply();
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK(r->body == "5");
  // Over the limit: refused at once, the body is never asked for.
  HttpTestClient c2(ts.port);
  c2.send("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\nExpect: 100-continue\r\n\r\n");
  r = c2.read_reply();
  REQUIRE(r);
  CHECK(r->status == 413);
}

TEST_CASE("http: huge headers get 431") {
  ServerOptions o;
  o.max_header_bytes = 4096;
  TestServer ts(o);
  HttpTestClient c(ts.port);
  c.send_request("GET", "/a", "X-Big: " + std::string(8192, 'h') + "\r\n");
  auto r = c.read_reply();
  REQUIRE(r);
  CHECK(r->status == 431);
}

TEST_CASE("http: bearer auth on every route but /health") {
  ServerOptions o;
  o.api_key = "sekrit-key";
  TestServer ts(o);
  HttpTestClient c(ts.port);
  auto get = [&](const std::string& path, const std::string& auth) {
    c.send_request("GET", path, auth.empty() ? "" : "Authorization: " + auth + "\r\n");
    auto r = c.read_reply();
    REQUIRE(r);
    return *r;
  };
  auto r = get("/a", "");
  CHECK(r.status == 401);
  CHECK(error_of(r)["code"] == 401);
  CHECK(r.headers["www-authenticate"] == "Bearer");
  CHECK(get("/a", "Bearer wrong").status == 401);
  CHECK(get("/a", "Bearer sekrit-ke").status == 401);    // a prefix of the key
  CHECK(get("/a", "Bearer sekrit-key2").status == 401);  // the key plus more
  CHECK(get("/a", "Basic sekrit-key").status == 401);    // wrong scheme
  CHECK(get("/a", "sekrit-key").status == 401);
  CHECK(get("/nope", "").status == 401);  // unknown routes are not probeable without the key
  CHECK(get("/a", "Bearer sekrit-key").status == 200);
  CHECK(get("/a", "bearer sekrit-key").status == 200);  // the scheme is case-insensitive
  CHECK(get("/health", "").status == 404);              // open (this router has no /health route)

  CHECK(bearer_matches("Bearer k", "k"));
  CHECK_FALSE(bearer_matches("Bearer ", ""));
  CHECK_FALSE(bearer_matches("", "k"));
}

TEST_CASE("http: keep-alive serves many requests on one connection") {
  TestServer ts;
  HttpTestClient c(ts.port);
  for (int i = 0; i < 10; ++i) {
    c.send_request(i % 2 ? "GET" : "POST", i % 2 ? "/a" : "/echo", "", i % 2 ? "" : "xyz");
    auto r = c.read_reply();
    REQUIRE(r);
    CHECK(r->status == 200);
    CHECK(r->headers["connection"] == "keep-alive");
    CHECK(r->body == (i % 2 ? "hello" : "3"));
  }
  CHECK(ts.server->num_open_connections() == 1);
  // Two requests sent back to back (pipelined) are answered in order.
  c.send(
      "GET /a HTTP/1.1\r\nHost: x\r\n\r\nPOST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: "
      "2\r\n\r\nab");
  auto r1 = c.read_reply();
  auto r2 = c.read_reply();
  REQUIRE(r1);
  REQUIRE(r2);
  CHECK(r1->body == "hello");
  CHECK(r2->body == "2");
  // "Connection: close" is honoured.
  c.send_request("GET", "/a", "Connection: close\r\n");
  auto r = c.read_reply();
  REQUIRE(r);
  CHECK(r->headers["connection"] == "close");
  CHECK(c.wait_closed());
  CHECK(wait_for([&] { return ts.server->num_open_connections() == 0; }));
}

TEST_CASE("http: malformed requests get 400 and the server goes on") {
  TestServer ts;
  for (const std::string bad :
       {"GARBAGE\r\n\r\n", "GET /a HTTP/9.9\r\n\r\n", "GET /a HTTP/1.1\r\nNo colon here\r\n\r\n",
        "GET /a HTTP/1.1\r\nContent-Length: -4\r\n\r\n", "G@T /a HTTP/1.1\r\n\r\n"}) {
    HttpTestClient c(ts.port);
    c.send(bad);
    auto r = c.read_reply();
    REQUIRE(r);
    CHECK(r->status == 400);
    CHECK(error_of(*r)["type"] == "BadRequestError");
    CHECK(c.wait_closed());
  }
  HttpTestClient c(ts.port);
  c.send_request("GET", "/a");
  auto r = c.read_reply();
  REQUIRE(r);
  CHECK(r->status == 200);
}

TEST_CASE("http: a throwing handler gives 500 and the next request works") {
  TestServer ts;
  HttpTestClient c(ts.port);
  c.send_request("GET", "/throw");
  auto r = c.read_reply();
  REQUIRE(r);
  CHECK(r->status == 500);
  CHECK(error_of(*r)["message"] == "boom at /throw");
  CHECK(error_of(*r)["type"] == "InternalServerError");
  c.send_request("GET", "/throw_std");
  r = c.read_reply();
  REQUIRE(r);
  CHECK(r->status == 500);
  CHECK(r->body.find("secret detail") == std::string::npos);  // internals stay in the log
  c.send_request("GET", "/a");
  r = c.read_reply();
  REQUIRE(r);
  CHECK(r->status == 200);
}

TEST_CASE("http: a stream of 100 pieces arrives in order as 100 chunks") {
  TestServer ts;
  auto st = ts.next;
  HttpTestClient c(ts.port);
  c.send_request("GET", "/stream");
  std::jthread producer([st] {
    for (int i = 0; i < 100; ++i) {
      st->push("piece-" + std::to_string(i) + "\n", i == 99);
      if (i % 10 == 0) std::this_thread::sleep_for(1ms);
    }
  });
  auto r = c.read_reply(10s);
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK(r->chunked);
  CHECK(r->headers["content-type"] == "text/event-stream");
  CHECK(r->headers["cache-control"] == "no-cache");
  REQUIRE(r->chunks.size() == 100);
  for (int i = 0; i < 100; ++i) CHECK(r->chunks[i] == "piece-" + std::to_string(i) + "\n");
  CHECK_FALSE(st->cancelled);
  // The connection is kept alive after a finished stream.
  c.send_request("GET", "/a");
  auto r2 = c.read_reply();
  REQUIRE(r2);
  CHECK(r2->body == "hello");
  CHECK(st->destroyed);
}

TEST_CASE("http: an HTTP/1.0 client gets a stream without chunking, ended by the close") {
  TestServer ts;
  ts.next->push("data: a\n\n");
  ts.next->push("data: b\n\n", true);
  HttpTestClient c(ts.port);
  c.send("GET /stream HTTP/1.0\r\n\r\n");
  auto r = c.read_reply();
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK_FALSE(r->chunked);
  CHECK(r->headers["connection"] == "close");
  CHECK(r->body == "data: a\n\ndata: b\n\n");
}

TEST_CASE("http: a client that never reads is back-pressured, then dropped after write_timeout") {
  ServerOptions o;
  o.max_buffered_bytes = 64 << 10;
  o.write_timeout = std::chrono::seconds(1);
  TestServer ts(o);
  auto st = ts.next;
  st->unbounded = true;
  HttpTestClient slow(ts.port, 4096);
  slow.send_request("GET", "/stream");
  // pull() stops being called once the socket and our bounded buffer are full.
  size_t prev = 0;
  const bool stalled = wait_for(
      [&] {
        prev = st->bytes.load();
        std::this_thread::sleep_for(200ms);
        return st->bytes.load() == prev && prev > 0;
      },
      8000ms);
  REQUIRE(stalled);
  CHECK(st->bytes.load() < (8u << 20));  // kernel socket buffers + max_buffered_bytes, bounded
  const int pulls = st->pulls.load();
  // Meanwhile other clients are served.
  {
    HttpTestClient c(ts.port);
    c.send_request("GET", "/a");
    auto r = c.read_reply();
    REQUIRE(r);
    CHECK(r->status == 200);
  }
  CHECK(wait_for([&] { return st->cancelled.load(); }, 4000ms));
  CHECK(st->pulls.load() <= pulls + 1);
  CHECK(wait_for([&] { return ts.server->num_open_connections() == 0; }));
  CHECK(wait_for([&] { return st->destroyed.load(); }));
}

TEST_CASE("http: a client that disconnects mid-stream cancels the source") {
  TestServer ts;
  SECTION("while data flows") {
    auto st = ts.next;
    std::jthread producer([st](std::stop_token stop) {
      for (int i = 0; !stop.stop_requested() && !st->cancelled; ++i) {
        st->push("data: " + std::to_string(i) + "\n\n");
        std::this_thread::sleep_for(5ms);
      }
    });
    {
      HttpTestClient c(ts.port);
      c.send_request("GET", "/stream");
      auto head = c.read_head();
      REQUIRE(head);
      for (int i = 0; i < 3; ++i) REQUIRE(c.read_chunk());
    }
    CHECK(wait_for([&] { return st->cancelled.load(); }));
  }
  SECTION("while the source has nothing to send (e.g. a long prefill)") {
    auto st = ts.next;
    {
      HttpTestClient c(ts.port);
      c.send_request("GET", "/stream");
      REQUIRE(c.read_head());
    }
    CHECK(wait_for([&] { return st->cancelled.load(); }));
  }
  CHECK(wait_for([&] { return ts.server->num_open_connections() == 0; }));
  HttpTestClient c(ts.port);
  c.send_request("GET", "/a");
  auto r = c.read_reply();
  REQUIRE(r);
  CHECK(r->status == 200);
}

TEST_CASE("http: stop(grace) lets an open stream finish, then refuses connections") {
  TestServer ts;
  auto st = ts.next;
  HttpTestClient c(ts.port);
  c.send_request("GET", "/stream");
  REQUIRE(c.read_head());
  HttpTestClient idle(ts.port);  // an idle keep-alive connection is closed at once
  std::jthread producer([st] {
    for (int i = 0; i < 20; ++i) {
      st->push(std::to_string(i), i == 19);
      std::this_thread::sleep_for(20ms);
    }
  });
  const auto t0 = std::chrono::steady_clock::now();
  std::thread stopper([&] { ts.server->stop(10s); });
  std::string got;
  for (;;) {
    auto chunk = c.read_chunk();
    REQUIRE(chunk);
    if (chunk->empty()) break;
    got += *chunk;
  }
  stopper.join();
  CHECK(got == "012345678910111213141516171819");
  CHECK_FALSE(st->cancelled);
  CHECK(std::chrono::steady_clock::now() - t0 < 5s);  // did not wait out the grace period
  CHECK(idle.wait_closed(1s));
  CHECK(HttpTestClient::refused(ts.port));
}

TEST_CASE("http: stop(grace) cancels a stream that outlives the grace period") {
  TestServer ts;
  auto st = ts.next;
  HttpTestClient c(ts.port);
  c.send_request("GET", "/stream");
  REQUIRE(c.read_head());
  const auto t0 = std::chrono::steady_clock::now();
  ts.server->stop(300ms);
  const auto took = std::chrono::steady_clock::now() - t0;
  CHECK(took >= 250ms);
  CHECK(took < 3s);
  CHECK(st->cancelled);
  CHECK(c.wait_closed(1s));
  CHECK(ts.server->num_open_connections() == 0);
}

TEST_CASE("http: start() names the address it cannot listen on") {
  TestServer ts;
  ServerOptions o;
  o.host = "127.0.0.1";
  o.port = ts.port;
  Server second(o, Router{});
  try {
    second.start();
    FAIL("a second server bound the same port");
  } catch (const Error& e) {
    CHECK(std::string(e.what()).find("127.0.0.1:" + std::to_string(ts.port)) != std::string::npos);
  }
}

TEST_CASE("http: concurrent streams on several connections each arrive whole and in order") {
  ServerOptions o;
  o.num_threads = 4;
  o.max_buffered_bytes = 256;  // tiny: forces many pause/resume cycles
  // One source per request, handed out in arrival order.
  std::mutex mu;
  std::vector<std::shared_ptr<SourceState>> states;
  Router r;
  r.add("GET", "/s", [&](const Request&) -> HandlerResult {
    auto st = std::make_shared<SourceState>();
    {
      std::lock_guard<std::mutex> lock(mu);
      states.push_back(st);
    }
    StreamResponse s;
    s.source = std::make_unique<kl::test::TestSource>(st);
    return s;
  });
  o.host = "127.0.0.1";
  o.port = 0;
  Server server(o, std::move(r));
  server.start();
  constexpr int kClients = 16, kPieces = 200;
  std::vector<std::unique_ptr<HttpTestClient>> clients;
  for (int i = 0; i < kClients; ++i) {
    clients.push_back(std::make_unique<HttpTestClient>(server.port()));
    clients.back()->send_request("GET", "/s");
  }
  REQUIRE(wait_for([&] {
    std::lock_guard<std::mutex> lock(mu);
    return states.size() == kClients;
  }));
  std::vector<std::jthread> producers;
  for (int i = 0; i < kClients; ++i) {
    producers.emplace_back([st = states[i]] {
      for (int k = 0; k < kPieces; ++k) st->push(std::to_string(k) + ",", k == kPieces - 1);
    });
  }
  std::string expected;
  for (int k = 0; k < kPieces; ++k) expected += std::to_string(k) + ",";
  for (auto& c : clients) {
    auto reply = c->read_reply(20s);
    REQUIRE(reply);
    CHECK(reply->body == expected);
  }
  for (auto& st : states) CHECK_FALSE(st->cancelled);
}
