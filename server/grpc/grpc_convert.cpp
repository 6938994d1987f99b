// klserve.v1 messages <-> SamplingParams / GenerationOptions / ChoiceUpdate.
#include "server/grpc/grpc_convert.h"

#include <algorithm>

#include <fmt/format.h>

namespace kl::grpcfe {

namespace pb = ::klserve::v1;

std::string to_sampling(const pb::SamplingParams& in, SamplingParams& params,
                        GenerationOptions& options) {
  if (in.has_n()) params.n = in.n();
  if (in.has_max_tokens()) params.max_tokens = in.max_tokens();
  if (in.has_temperature()) params.temperature = in.temperature();
  if (in.has_top_p()) params.top_p = in.top_p();
  if (in.has_top_k()) params.top_k = in.top_k();
  if (in.has_min_p()) params.min_p = in.min_p();
  if (in.has_seed()) params.seed = in.seed();
  if (in.has_repetition_penalty()) params.repetition_penalty = in.repetition_penalty();
  if (in.has_presence_penalty()) params.presence_penalty = in.presence_penalty();
  if (in.has_frequency_penalty()) params.frequency_penalty = in.frequency_penalty();
  params.stop_token_ids.assign(in.stop_token_ids().begin(), in.stop_token_ids().end());
  params.ignore_eos = in.ignore_eos();
  params.min_tokens = in.min_tokens();
  if (in.has_logprobs()) {
    // validate() treats -1 as "none"; on the wire unset means none, so -1 is out of range here.
    if (in.logprobs() < 0)
      return fmt::format("logprobs must be in [0, {}], got {}", kMaxLogprobs, in.logprobs());
    params.logprobs = in.logprobs();
    options.logprobs = true;
  }
  // A map has no order; sort so that the same request always gives the same params.
  params.logit_bias.assign(in.logit_bias().begin(), in.logit_bias().end());
  std::sort(params.logit_bias.begin(), params.logit_bias.end());

  if (in.stop_size() > kMaxStopStrings)
    return fmt::format("stop: at most {} stop strings are allowed, got {}", kMaxStopStrings,
                       in.stop_size());
  for (const std::string& s : in.stop()) {
    if (s.size() > kMaxStopStringBytes)
      return fmt::format("stop: a stop string may have at most {} bytes, got {}",
                         kMaxStopStringBytes, s.size());
  }
  options.stop.assign(in.stop().begin(), in.stop().end());
  options.include_stop_str_in_output = in.include_stop_str_in_output();
  options.skip_special_tokens = in.has_skip_special_tokens() ? in.skip_special_tokens() : true;
  options.parse_tool_calls = false;  // raw text out: the client sees the model's markers
  return "";
}

void add_delta(const ChoiceUpdate& u, pb::GenerateResponse& out) {
  pb::ChoiceDelta* d = out.add_choices();
  d->set_index(u.index);
  d->mutable_token_ids()->Add(u.token_ids.begin(), u.token_ids.end());
  d->set_text(u.text);
  for (const TokenLogprobs& l : u.logprobs) {
    pb::TokenLogprob* p = d->add_logprobs();
    p->set_token(l.token);
    p->set_logprob(l.logprob);
    for (const kernels::TokenLogprob& t : l.top) {
      pb::TopLogprob* q = p->add_top();
      q->set_token(t.token);
      q->set_logprob(t.logprob);
    }
  }
  if (u.finish_reason) d->set_finish_reason(*u.finish_reason);
}

std::string context_length_error(int64_t max_model_len, int64_t prompt_tokens,
                                 const SamplingParams& params) {
  if (!params.max_tokens || max_model_len <= 0) return "";
  const int64_t total = prompt_tokens + *params.max_tokens;
  if (total <= max_model_len) return "";
  return fmt::format(
      "This model's maximum context length is {} tokens. However, you requested {} tokens ({} in "
      "the messages, {} in the completion). Please reduce the length of the messages or "
      "completion.",
      max_model_len, total, prompt_tokens, *params.max_tokens);
}

}  // namespace kl::grpcfe
