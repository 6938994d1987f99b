// klserve.v1.Klserve: Generate (server streaming, thread per call with cancellation polling),
// Tokenize and ModelInfo, with bearer-token auth and vLLM's error wording.
#include "server/grpc/klserve_service.h"

#include <algorithm>
#include <chrono>

#include "engine/core/error.h"
#include "engine/core/log.h"
#include "server/grpc/grpc_convert.h"

namespace kl::grpcfe {

namespace pb = ::klserve::v1;
using grpc::Status;
using grpc::StatusCode;

namespace {

// How long a Generate handler waits for engine output before it looks at IsCancelled() again:
// the bound on how long a cancelled call keeps its engine request alive.
constexpr std::chrono::milliseconds kPollSlice{10};

// Compares without an early exit so that the time taken does not reveal a matching prefix.
bool constant_time_equal(std::string_view a, std::string_view b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  const size_t n = std::max(a.size(), b.size());
  for (size_t i = 0; i < n; ++i) {
    const unsigned char x = i < a.size() ? static_cast<unsigned char>(a[i]) : 0;
    const unsigned char y = i < b.size() ? static_cast<unsigned char>(b[i]) : 0;
    diff |= x ^ y;
  }
  return diff == 0;
}

}  // namespace

KlserveService::KlserveService(ServingContext& ctx, std::string api_key)
    : ctx_(ctx), api_key_(std::move(api_key)) {}

Status KlserveService::refuse(StatusCode code, int http_status, const std::string& message) const {
  if (ctx_.metrics) ctx_.metrics->on_request_error(http_status);
  return Status(code, message);
}

Status KlserveService::authorize(const grpc::ServerContext& sc) const {
  if (api_key_.empty()) return Status::OK;
  const auto& md = sc.client_metadata();
  auto it = md.find("authorization");
  if (it == md.end())
    return refuse(StatusCode::UNAUTHENTICATED, 401,
                  "missing metadata 'authorization: Bearer <api key>'");
  const std::string_view value(it->second.data(), it->second.size());
  constexpr std::string_view kBearer = "Bearer ";
  if (value.substr(0, kBearer.size()) != kBearer ||
      !constant_time_equal(value.substr(kBearer.size()), api_key_))
    return refuse(StatusCode::UNAUTHENTICATED, 401, "invalid API key");
  return Status::OK;
}

Status KlserveService::Generate(grpc::ServerContext* sc, const pb::GenerateRequest* req,
                                grpc::ServerWriter<pb::GenerateResponse>* writer) {
  if (Status s = authorize(*sc); !s.ok()) return s;
  const HealthState health = ctx_.health.load();
  if (health != HealthState::kReady)
    return refuse(StatusCode::UNAVAILABLE, 503,
                  health == HealthState::kLoading ? "the model is loading"
                                                  : "the server is not serving requests");

  GenerateRequest greq;
  switch (req->input_case()) {
    case pb::GenerateRequest::kText:
      if (!ctx_.has_tokenizer())
        return refuse(StatusCode::INVALID_ARGUMENT, 400,
                      "text: this server has no tokenizer (--skip-tokenizer-init); send "
                      "token_ids instead");
      try {
        greq.prompt = ctx_.tokenizer->encode(req->text(), /*allow_special=*/false);
      } catch (const Error& e) {
        return refuse(StatusCode::INVALID_ARGUMENT, 400, std::string("text: ") + e.what());
      }
      break;
    case pb::GenerateRequest::kTokenIds:
      greq.prompt.assign(req->token_ids().ids().begin(), req->token_ids().ids().end());
      break;
    default:
      return refuse(StatusCode::INVALID_ARGUMENT, 400, "input: set either text or token_ids");
  }
  if (greq.prompt.empty())
    return refuse(StatusCode::INVALID_ARGUMENT, 400, "input: the prompt is empty");

  GenerationOptions options;
  if (std::string err = to_sampling(req->sampling(), greq.params, options); !err.empty())
    return refuse(StatusCode::INVALID_ARGUMENT, 400, err);
  if (!options.stop.empty() && !ctx_.has_tokenizer())
    return refuse(StatusCode::INVALID_ARGUMENT, 400,
                  "stop: stop strings need a tokenizer (--skip-tokenizer-init); use "
                  "stop_token_ids");
  greq.priority = req->priority();
  const auto num_prompt = static_cast<int64_t>(greq.prompt.size());
  if (std::string err = context_length_error(ctx_.card.max_model_len, num_prompt, greq.params);
      !err.empty())
    return refuse(StatusCode::INVALID_ARGUMENT, 400, err);

  const int n = greq.params.n;
  SubmitResult sub = ctx_.engine.load()->submit(std::move(greq));
  switch (sub.status) {
    case SubmitStatus::kOk:
      break;
    case SubmitStatus::kInvalid:  // SamplingParams::validate and the prompt checks name the field
      return refuse(StatusCode::INVALID_ARGUMENT, 400, sub.error);
    case SubmitStatus::kOverloaded:
      return refuse(StatusCode::RESOURCE_EXHAUSTED, 429, sub.error);
    case SubmitStatus::kShuttingDown:
      return refuse(StatusCode::UNAVAILABLE, 503, sub.error);
  }

  // From here on the run's destructor aborts the engine request on every early return.
  GenerationRun run(ctx_, sub.stream, n, num_prompt, std::move(options));
  while (!run.done()) {
    if (sc->IsCancelled()) return Status(StatusCode::CANCELLED, "the client cancelled the call");
    std::vector<ChoiceUpdate> updates = run.wait(kPollSlice);
    if (updates.empty()) continue;
    pb::GenerateResponse resp;
    resp.set_request_id(run.request_id());
    for (const ChoiceUpdate& u : updates) {
      if (!u.error.empty()) {
        logger("server")->error("gRPC request {} failed in the engine: {}", run.request_id(),
                                u.error);
        if (ctx_.metrics) ctx_.metrics->on_request_error(500);
        return Status(StatusCode::INTERNAL, u.error);
      }
      // Prompt-only updates (no tokens, no text, no finish) carry nothing for this API.
      if (u.token_ids.empty() && u.text.empty() && !u.finish_reason) continue;
      add_delta(u, resp);
    }
    if (run.done()) {
      pb::Usage* usage = resp.mutable_usage();
      usage->set_prompt_tokens(num_prompt);
      usage->set_completion_tokens(run.num_generated_tokens());
      usage->set_total_tokens(num_prompt + run.num_generated_tokens());
    }
    if (resp.choices_size() == 0 && !resp.has_usage()) continue;
    // Write blocks under flow control; it fails (and we abort the request) once the call is gone.
    if (!writer->Write(resp))
      return Status(StatusCode::CANCELLED, "the client went away during the stream");
  }
  return Status::OK;
}

Status KlserveService::Tokenize(grpc::ServerContext* sc, const pb::TokenizeRequest* req,
                                pb::TokenizeResponse* resp) {
  if (Status s = authorize(*sc); !s.ok()) return s;
  if (!ctx_.has_tokenizer())
    return refuse(StatusCode::INVALID_ARGUMENT, 400,
                  "text: this server has no tokenizer (--skip-tokenizer-init)");
  std::vector<tok::TokenId> ids;
  try {
    ids = ctx_.tokenizer->encode(req->text(), req->allow_special_tokens());
  } catch (const Error& e) {
    return refuse(StatusCode::INVALID_ARGUMENT, 400, std::string("text: ") + e.what());
  }
  resp->mutable_token_ids()->Add(ids.begin(), ids.end());
  resp->set_count(static_cast<int32_t>(ids.size()));
  resp->set_max_model_len(ctx_.card.max_model_len);
  return Status::OK;
}

Status KlserveService::ModelInfo(grpc::ServerContext* sc, const pb::ModelInfoRequest*,
                                 pb::ModelInfoResponse* resp) {
  if (Status s = authorize(*sc); !s.ok()) return s;
  resp->set_served_model_name(ctx_.card.served_model_name);
  resp->set_model_dir(ctx_.card.model_dir);
  resp->set_max_model_len(ctx_.card.max_model_len);
  resp->set_vocab_size(ctx_.card.vocab_size);
  resp->set_has_tokenizer(ctx_.has_tokenizer());
  if (ctx_.control_ids) {
    for (tok::TokenId id : ctx_.control_ids->stop_ids()) resp->add_eos_token_ids(id);
  }
  return Status::OK;
}

}  // namespace kl::grpcfe
