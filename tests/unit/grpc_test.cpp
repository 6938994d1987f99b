// The gRPC front end through a real grpc++ client: Generate streams the fake executor's tokens
// with their text and usage, Tokenize, ModelInfo, error statuses, auth, cancellation freeing the
// engine request, grpc.health.v1 and server reflection (raw protobuf bytes over a generic stub).
#include <catch2/catch.hpp>

#include <thread>

#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include "klserve/v1/klserve.grpc.pb.h"
#include "tests/support/grpc_test_stack.h"

using namespace kl;
using namespace std::chrono_literals;
namespace pb = ::klserve::v1;

namespace {

struct Client {
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<pb::Klserve::Stub> stub;
  explicit Client(const std::string& address)
      : channel(grpc::CreateChannel(address, grpc::InsecureChannelCredentials())),
        stub(pb::Klserve::NewStub(channel)) {}
};

void set_deadline(grpc::ClientContext& c, std::chrono::milliseconds d = 10s) {
  c.set_deadline(std::chrono::system_clock::now() + d);
}

struct Streamed {
  std::vector<std::vector<int32_t>> ids;  // per choice
  std::vector<std::string> text;
  std::vector<std::string> finish;
  std::vector<pb::TokenLogprob> logprobs;  // choice 0
  pb::Usage usage;
  bool has_usage = false;
  int num_messages = 0;
  grpc::Status status;
};

Streamed generate(pb::Klserve::Stub& stub, const pb::GenerateRequest& req) {
  grpc::ClientContext c;
  set_deadline(c);
  Streamed s;
  auto reader = stub.Generate(&c, req);
  pb::GenerateResponse r;
  while (reader->Read(&r)) {
    ++s.num_messages;
    for (const auto& d : r.choices()) {
      const auto i = static_cast<size_t>(d.index());
      if (s.ids.size() <= i) {
        s.ids.resize(i + 1);
        s.text.resize(i + 1);
        s.finish.resize(i + 1);
      }
      s.ids[i].insert(s.ids[i].end(), d.token_ids().begin(), d.token_ids().end());
      s.text[i] += d.text();
      if (!d.finish_reason().empty()) s.finish[i] = d.finish_reason();
      if (i == 0) s.logprobs.insert(s.logprobs.end(), d.logprobs().begin(), d.logprobs().end());
    }
    if (r.has_usage()) {
      s.usage = r.usage();
      s.has_usage = true;
    }
  }
  s.status = reader->Finish();
  return s;
}

pb::GenerateRequest token_request(int prompt_len, int max_tokens) {
  pb::GenerateRequest req;
  for (int i = 0; i < prompt_len; ++i) req.mutable_token_ids()->add_ids(10 + i);
  req.mutable_sampling()->set_max_tokens(max_tokens);
  req.mutable_sampling()->set_temperature(0.f);
  return req;
}

template <typename Pred>
bool wait_for(Pred p, std::chrono::milliseconds limit = 5000ms) {
  const auto until = std::chrono::steady_clock::now() + limit;
  while (!p()) {
    if (std::chrono::steady_clock::now() > until) return false;
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

// Raw calls for services whose .proto files grpc++ does not install (health, reflection).
grpc::ByteBuffer to_buffer(const std::string& bytes) {
  grpc::Slice slice(bytes);
  return grpc::ByteBuffer(&slice, 1);
}

std::string from_buffer(const grpc::ByteBuffer& buffer) {
  std::vector<grpc::Slice> slices;
  (void)buffer.Dump(&slices);
  std::string out;
  for (const auto& s : slices) out.append(reinterpret_cast<const char*>(s.begin()), s.size());
  return out;
}

void next_event(grpc::CompletionQueue& cq) {
  void* tag = nullptr;
  bool ok = false;
  REQUIRE(cq.Next(&tag, &ok));
}

std::pair<grpc::Status, std::string> raw_unary(grpc::Channel& channel, const std::string& method,
                                               const std::string& request) {
  grpc::GenericStub stub(channel.shared_from_this());
  grpc::ClientContext c;
  set_deadline(c, 5s);
  grpc::CompletionQueue cq;
  auto call = stub.PrepareUnaryCall(&c, method, to_buffer(request), &cq);
  call->StartCall();
  grpc::ByteBuffer response;
  grpc::Status status;
  call->Finish(&response, &status, reinterpret_cast<void*>(1));
  next_event(cq);
  cq.Shutdown();
  return {status, status.ok() ? from_buffer(response) : ""};
}

// One request, one response on a bidi stream (the reflection protocol).
std::string raw_bidi_once(grpc::Channel& channel, const std::string& method,
                          const std::string& request) {
  grpc::GenericStub stub(channel.shared_from_this());
  grpc::ClientContext c;
  set_deadline(c, 5s);
  grpc::CompletionQueue cq;
  auto call = stub.PrepareCall(&c, method, &cq);
  call->StartCall(reinterpret_cast<void*>(1));
  next_event(cq);
  call->Write(to_buffer(request), reinterpret_cast<void*>(2));
  next_event(cq);
  call->WritesDone(reinterpret_cast<void*>(3));
  next_event(cq);
  grpc::ByteBuffer response;
  call->Read(&response, reinterpret_cast<void*>(4));
  next_event(cq);
  grpc::Status status;
  call->Finish(&status, reinterpret_cast<void*>(5));
  next_event(cq);
  cq.Shutdown();
  REQUIRE(status.ok());
  return from_buffer(response);
}

}  // namespace

TEST_CASE("grpc: Generate streams the engine's tokens, their text, finish reason and usage") {
  test::GrpcTestStack stack;
  Client client(stack.address());
  const Streamed s = generate(*client.stub, token_request(8, 12));
  REQUIRE(s.status.ok());
  REQUIRE(s.ids.size() == 1);
  REQUIRE(s.ids[0].size() == 12);
  std::vector<int32_t> expected;
  for (int i = 0; i < 12; ++i) expected.push_back(stack.executor().token_at(0, 8 + i));
  CHECK(s.ids[0] == expected);
  CHECK(s.text[0] == test::grpc_test_tokenizer()->decode(expected, /*skip_special=*/true));
  CHECK(s.finish[0] == "length");
  REQUIRE(s.has_usage);
  CHECK(s.usage.prompt_tokens() == 8);
  CHECK(s.usage.completion_tokens() == 12);
  CHECK(s.usage.total_tokens() == 20);
  CHECK(s.num_messages >= 2);  // streamed, not one final message
}

TEST_CASE("grpc: Generate from text, with n > 1 and logprobs") {
  test::GrpcTestStack stack;
  Client client(stack.address());
  pb::GenerateRequest req;
  req.set_text("Hello, world! 你好");
  req.mutable_sampling()->set_n(2);
  req.mutable_sampling()->set_max_tokens(5);
  req.mutable_sampling()->set_seed(7);
  req.mutable_sampling()->set_logprobs(2);
  const Streamed s = generate(*client.stub, req);
  REQUIRE(s.status.ok());
  const auto prompt = test::grpc_test_tokenizer()->encode("Hello, world! 你好");
  REQUIRE(s.ids.size() == 2);
  for (int i = 0; i < 2; ++i) {
    CHECK(s.ids[i].size() == 5);
    CHECK(s.finish[i] == "length");
  }
  CHECK(s.usage.prompt_tokens() == static_cast<int64_t>(prompt.size()));
  CHECK(s.usage.completion_tokens() == 10);
  // The fake executor reports no logprobs of its own; whatever comes must match the tokens.
  for (size_t i = 0; i < s.logprobs.size(); ++i) CHECK(s.logprobs[i].token() == s.ids[0][i]);
}

TEST_CASE("grpc: Tokenize and ModelInfo") {
  test::GrpcTestStack stack;
  Client client(stack.address());
  const auto tok = test::grpc_test_tokenizer();
  {
    grpc::ClientContext c;
    set_deadline(c);
    pb::TokenizeRequest req;
    req.set_text("The quick brown fox <|im_end|>");
    pb::TokenizeResponse resp;
    REQUIRE(client.stub->Tokenize(&c, req, &resp).ok());
    const auto expected = tok->encode(req.text());
    CHECK(std::vector<int32_t>(resp.token_ids().begin(), resp.token_ids().end()) == expected);
    CHECK(resp.count() == static_cast<int32_t>(expected.size()));
    CHECK(resp.max_model_len() == 512);
  }
  {
    grpc::ClientContext c;
    set_deadline(c);
    pb::TokenizeRequest req;
    req.set_text("<|im_end|>");
    req.set_allow_special_tokens(true);
    pb::TokenizeResponse resp;
    REQUIRE(client.stub->Tokenize(&c, req, &resp).ok());
    REQUIRE(resp.token_ids_size() == 1);
    CHECK(resp.token_ids(0) == *tok->special_id("<|im_end|>"));
  }
  grpc::ClientContext c;
  set_deadline(c);
  pb::ModelInfoResponse info;
  REQUIRE(client.stub->ModelInfo(&c, pb::ModelInfoRequest(), &info).ok());
  CHECK(info.served_model_name() == "kimi-linear-test");
  CHECK(info.max_model_len() == 512);
  CHECK(info.vocab_size() == test::kGrpcTestVocab);
  CHECK(info.has_tokenizer());
  CHECK(info.eos_token_ids_size() >= 1);
}

TEST_CASE("grpc: invalid requests are INVALID_ARGUMENT naming the field") {
  test::GrpcTestStack stack;
  Client client(stack.address());
  auto expect_invalid = [&](const pb::GenerateRequest& req, const std::string& needle) {
    const Streamed s = generate(*client.stub, req);
    INFO(s.status.error_message());
    CHECK(s.status.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
    CHECK(s.status.error_message().find(needle) != std::string::npos);
    CHECK(s.num_messages == 0);
  };
  pb::GenerateRequest r = token_request(4, 4);
  r.mutable_sampling()->set_temperature(-1.f);
  expect_invalid(r, "temperature");
  r = token_request(4, 4);
  r.mutable_sampling()->set_n(0);
  expect_invalid(r, "n must be");
  r = token_request(4, 4);
  r.mutable_sampling()->set_top_p(0.f);
  expect_invalid(r, "top_p");
  r = token_request(4, 4);
  r.mutable_sampling()->set_logprobs(21);
  expect_invalid(r, "logprobs");
  r = token_request(4, 4);
  (*r.mutable_sampling()->mutable_logit_bias())[100000] = 1.f;
  expect_invalid(r, "logit_bias");
  r = token_request(4, 4);
  r.mutable_token_ids()->add_ids(-5);
  expect_invalid(r, "prompt token");
  r = token_request(4, 4);
  for (int i = 0; i < 100; ++i) r.mutable_sampling()->add_stop("x");
  expect_invalid(r, "stop");
  expect_invalid(pb::GenerateRequest(), "input");
  // The context length, both ways vLLM words it.
  expect_invalid(token_request(10, 600), "maximum context length is 512 tokens");
  expect_invalid(token_request(600, 4), "maximum context length is 512 tokens");
  // The server goes on serving.
  CHECK(generate(*client.stub, token_request(4, 3)).status.ok());
}

TEST_CASE("grpc: text input without a tokenizer is INVALID_ARGUMENT; token ids still work") {
  test::GrpcStackOptions o;
  o.with_tokenizer = false;
  test::GrpcTestStack stack(o);
  Client client(stack.address());
  pb::GenerateRequest req;
  req.set_text("hello");
  Streamed s = generate(*client.stub, req);
  CHECK(s.status.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
  CHECK(s.status.error_message().find("tokenizer") != std::string::npos);
  s = generate(*client.stub, token_request(5, 4));
  REQUIRE(s.status.ok());
  CHECK(s.ids.at(0).size() == 4);
  CHECK(s.text.at(0).empty());
  grpc::ClientContext c;
  set_deadline(c);
  pb::TokenizeRequest treq;
  treq.set_text("hello");
  pb::TokenizeResponse tresp;
  CHECK(client.stub->Tokenize(&c, treq, &tresp).error_code() == grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_CASE("grpc: overloaded engine is RESOURCE_EXHAUSTED") {
  test::GrpcStackOptions o;
  o.max_num_waiting = 0;  // every submission is refused as overloaded
  test::GrpcTestStack stack(o);
  Client client(stack.address());
  const Streamed s = generate(*client.stub, token_request(4, 4));
  CHECK(s.status.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED);
}

TEST_CASE("grpc: with an API key, calls need a bearer token") {
  test::GrpcStackOptions o;
  o.api_key = "sekret";
  test::GrpcTestStack stack(o);
  Client client(stack.address());
  for (const char* header : {"", "Bearer wrong", "sekret", "Bearer sekret"}) {
    grpc::ClientContext c;
    set_deadline(c);
    if (*header) c.AddMetadata("authorization", header);
    pb::ModelInfoResponse info;
    const grpc::Status st = client.stub->ModelInfo(&c, pb::ModelInfoRequest(), &info);
    INFO(header);
    CHECK(st.error_code() == (std::string(header) == "Bearer sekret"
                                  ? grpc::StatusCode::OK
                                  : grpc::StatusCode::UNAUTHENTICATED));
  }
  // Health stays open (probes carry no credentials).
  CHECK(raw_unary(*client.channel, "/grpc.health.v1.Health/Check", "").first.ok());
}

TEST_CASE("grpc: a client that cancels mid-stream ends its engine request") {
  test::GrpcStackOptions o;
  o.step_delay = std::chrono::microseconds(5000);
  test::GrpcTestStack stack(o);
  Client client(stack.address());
  grpc::ClientContext c;
  set_deadline(c, 30s);
  auto reader = client.stub->Generate(&c, token_request(16, 400));
  pb::GenerateResponse r;
  int tokens = 0;
  while (tokens < 5 && reader->Read(&r))
    for (const auto& d : r.choices()) tokens += d.token_ids_size();
  REQUIRE(tokens >= 5);
  CHECK(stack.engine().stats().num_running == 1);
  const auto cancelled_at = std::chrono::steady_clock::now();
  c.TryCancel();
  // Well before the 400 tokens (>= 2 s at 5 ms a step) could have finished.
  CHECK(wait_for([&] { return stack.engine().stats().num_running == 0; }, 1000ms));
  CHECK(wait_for([&] { return stack.engine().stats().page_usage == 0.0; }, 1000ms));
  CHECK(std::chrono::steady_clock::now() - cancelled_at < 1000ms);
  while (reader->Read(&r)) {
  }
  CHECK(reader->Finish().error_code() == grpc::StatusCode::CANCELLED);
}

TEST_CASE("grpc: a client whose deadline passes ends its engine request") {
  test::GrpcStackOptions o;
  o.step_delay = std::chrono::microseconds(5000);
  test::GrpcTestStack stack(o);
  Client client(stack.address());
  grpc::ClientContext c;
  set_deadline(c, 200ms);
  const auto reader = client.stub->Generate(&c, token_request(16, 400));
  pb::GenerateResponse r;
  while (reader->Read(&r)) {
  }
  CHECK(reader->Finish().error_code() == grpc::StatusCode::DEADLINE_EXCEEDED);
  CHECK(wait_for([&] { return stack.engine().stats().num_running == 0; }, 1000ms));
  CHECK(wait_for([&] { return stack.engine().stats().page_usage == 0.0; }, 1000ms));
}

TEST_CASE("grpc: grpc.health.v1 reports SERVING, then NOT_SERVING when told") {
  test::GrpcTestStack stack;
  Client client(stack.address());
  const std::string kServing = std::string("\x08\x01", 2);     // HealthCheckResponse{SERVING}
  const std::string kNotServing = std::string("\x08\x02", 2);  // {NOT_SERVING}
  const std::string svc = "klserve.v1.Klserve";
  const std::string named = std::string("\x0a") + static_cast<char>(svc.size()) + svc;
  auto [st, body] = raw_unary(*client.channel, "/grpc.health.v1.Health/Check", "");
  REQUIRE(st.ok());
  CHECK(body == kServing);
  std::tie(st, body) = raw_unary(*client.channel, "/grpc.health.v1.Health/Check", named);
  REQUIRE(st.ok());
  CHECK(body == kServing);
  stack.server().set_serving(false);
  std::tie(st, body) = raw_unary(*client.channel, "/grpc.health.v1.Health/Check", named);
  REQUIRE(st.ok());
  CHECK(body == kNotServing);
  const std::string unknown = std::string("\x0a\x03", 2) + "foo";
  std::tie(st, body) = raw_unary(*client.channel, "/grpc.health.v1.Health/Check", unknown);
  CHECK(st.error_code() == grpc::StatusCode::NOT_FOUND);
}

TEST_CASE("grpc: server reflection lists the klserve service") {
  test::GrpcTestStack stack;
  Client client(stack.address());
  // ServerReflectionRequest{list_services: ""} (field 7).
  const std::string body = raw_bidi_once(
      *client.channel, "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
      std::string("\x3a\x00", 2));
  CHECK(body.find("klserve.v1.Klserve") != std::string::npos);
  CHECK(body.find("grpc.health.v1.Health") != std::string::npos);
}

TEST_CASE("grpc: concurrent streams each get all their tokens") {
  test::GrpcTestStack stack;
  Client client(stack.address());
  constexpr int kStreams = 8;
  std::vector<Streamed> results(kStreams);
  std::vector<std::thread> threads;
  for (int i = 0; i < kStreams; ++i)
    threads.emplace_back([&, i] { results[i] = generate(*client.stub, token_request(4 + i, 20)); });
  for (auto& t : threads) t.join();
  for (const Streamed& s : results) {
    REQUIRE(s.status.ok());
    CHECK(s.ids.at(0).size() == 20);
    CHECK(s.finish.at(0) == "length");
  }
  CHECK(wait_for([&] { return stack.engine().stats().num_running == 0; }));
}

TEST_CASE("grpc: stop() with a grace cancels streams still running and their engine requests") {
  test::GrpcStackOptions o;
  o.step_delay = std::chrono::microseconds(5000);
  test::GrpcTestStack stack(o);
  Client client(stack.address());
  grpc::ClientContext c;
  set_deadline(c, 30s);
  auto reader = client.stub->Generate(&c, token_request(16, 400));
  pb::GenerateResponse r;
  REQUIRE(reader->Read(&r));
  const auto t0 = std::chrono::steady_clock::now();
  stack.server().stop(50ms);
  CHECK(std::chrono::steady_clock::now() - t0 < 1000ms);
  CHECK(wait_for([&] { return stack.engine().stats().num_running == 0; }, 1000ms));
  while (reader->Read(&r)) {
  }
  CHECK_FALSE(reader->Finish().ok());
}
