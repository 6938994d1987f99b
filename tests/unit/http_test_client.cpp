// The raw-socket HTTP test client (see http_test_client.h).
#include "http_test_client.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace kl::test {
namespace {

int connect_to(uint16_t port, int rcvbuf) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) throw std::runtime_error("socket() failed");
  if (rcvbuf > 0) ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

}  // namespace

HttpTestClient::HttpTestClient(uint16_t port, int rcvbuf) : fd_(connect_to(port, rcvbuf)) {
  if (fd_ < 0) throw std::runtime_error("connect() failed");
}

HttpTestClient::~HttpTestClient() {
  close();
}

bool HttpTestClient::refused(uint16_t port) {
  const int fd = connect_to(port, 0);
  if (fd < 0) return true;
  ::close(fd);
  return false;
}

void HttpTestClient::close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

void HttpTestClient::send(const std::string& bytes) {
  size_t off = 0;
  while (off < bytes.size()) {
    const ssize_t n = ::send(fd_, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
    if (n <= 0) throw std::runtime_error(std::string("send() failed: ") + std::strerror(errno));
    off += static_cast<size_t>(n);
  }
}

void HttpTestClient::send_request(const std::string& method, const std::string& path,
                                  const std::string& extra_headers, const std::string& body) {
  std::string req = method + " " + path + " HTTP/1.1\r\nHost: localhost\r\n" + extra_headers;
  if (!body.empty() || method == "POST")
    req += "Content-Length: " + std::to_string(body.size()) + "\r\n";
  req += "\r\n" + body;
  send(req);
}

template <typename Pred>
bool HttpTestClient::fill_until(Pred pred, std::chrono::steady_clock::time_point until) {
  while (!pred()) {
    if (eof_ || fd_ < 0) return false;
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        until - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    pollfd p{fd_, POLLIN, 0};
    const int r = ::poll(&p, 1, static_cast<int>(left.count()));
    if (r <= 0) continue;
    char tmp[16384];
    const ssize_t n = ::recv(fd_, tmp, sizeof(tmp), 0);
    if (n <= 0) {
      eof_ = true;
      return pred();
    }
    buf_.append(tmp, static_cast<size_t>(n));
  }
  return true;
}

bool HttpTestClient::read_line(std::string& line, std::chrono::steady_clock::time_point until) {
  if (!fill_until([&] { return buf_.find("\r\n") != std::string::npos; }, until)) return false;
  const size_t pos = buf_.find("\r\n");
  line = buf_.substr(0, pos);
  buf_.erase(0, pos + 2);
  return true;
}

bool HttpTestClient::read_exact(size_t n, std::string& out,
                                std::chrono::steady_clock::time_point until) {
  if (!fill_until([&] { return buf_.size() >= n; }, until)) return false;
  out = buf_.substr(0, n);
  buf_.erase(0, n);
  return true;
}

std::optional<HttpReply> HttpTestClient::read_head(std::chrono::milliseconds timeout) {
  const auto until = std::chrono::steady_clock::now() + timeout;
  HttpReply r;
  std::string line;
  if (!read_line(line, until)) return std::nullopt;
  // "HTTP/1.1 200 OK"
  if (line.size() < 12 || line.compare(0, 5, "HTTP/") != 0) return std::nullopt;
  r.status = std::stoi(line.substr(9, 3));
  for (;;) {
    if (!read_line(line, until)) return std::nullopt;
    if (line.empty()) break;
    const size_t colon = line.find(':');
    if (colon == std::string::npos) return std::nullopt;
    std::string value = line.substr(colon + 1);
    while (!value.empty() && value.front() == ' ') value.erase(0, 1);
    r.headers[lower(line.substr(0, colon))] = value;
  }
  auto te = r.headers.find("transfer-encoding");
  r.chunked = te != r.headers.end() && lower(te->second) == "chunked";
  return r;
}

std::optional<std::string> HttpTestClient::read_chunk(std::chrono::milliseconds timeout) {
  const auto until = std::chrono::steady_clock::now() + timeout;
  std::string line;
  if (!read_line(line, until)) return std::nullopt;
  const size_t size = std::stoul(line, nullptr, 16);
  std::string data, crlf;
  if (!read_exact(size, data, until) || !read_exact(2, crlf, until) || crlf != "\r\n") {
    return std::nullopt;
  }
  return data;
}

std::optional<HttpReply> HttpTestClient::read_reply(std::chrono::milliseconds timeout) {
  const auto until = std::chrono::steady_clock::now() + timeout;
  auto r = read_head(timeout);
  if (!r) return std::nullopt;
  if (r->chunked) {
    for (;;) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          until - std::chrono::steady_clock::now());
      auto c = read_chunk(left);
      if (!c) return std::nullopt;
      if (c->empty()) break;
      r->body += *c;
      r->chunks.push_back(std::move(*c));
    }
    return r;
  }
  auto cl = r->headers.find("content-length");
  if (cl != r->headers.end()) {
    if (!read_exact(std::stoul(cl->second), r->body, until)) return std::nullopt;
    return r;
  }
  // No length: the body ends with the connection.
  fill_until([] { return false; }, until);
  r->body = std::move(buf_);
  buf_.clear();
  return r;
}

bool HttpTestClient::wait_closed(std::chrono::milliseconds timeout) {
  const auto until = std::chrono::steady_clock::now() + timeout;
  while (!eof_ && std::chrono::steady_clock::now() < until) {
    fill_until([] { return false; }, until);
    buf_.clear();
  }
  return eof_;
}

}  // namespace kl::test
