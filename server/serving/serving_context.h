// What every front end (HTTP, gRPC) shares: the engine, the tokenizer (absent with
// --skip-tokenizer-init), the model card, the metrics and the health state.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "engine/api/engine.h"
#include "server/metrics/metrics.h"
#include "server/tokenizer/chat_template.h"
#include "server/tokenizer/kimi_tokenizer.h"
#include "server/tokenizer/tokenizer.h"

namespace kl {

enum class HealthState : uint8_t { kLoading, kReady, kDraining, kFailed };

struct ModelCard {
  std::string served_model_name;  // what clients put in "model"
  std::string model_dir;          // where it was loaded from ("<embedded default>", ...)
  int64_t max_model_len = 0;
  int64_t vocab_size = 0;
  int64_t created = 0;  // unix seconds, for /v1/models
};

struct ServingContext {
  // Set once the model is loaded (the front ends start before, answering 503 while loading).
  // Readers check `health` first: kReady is stored after `engine`.
  std::atomic<Engine*> engine{nullptr};
  std::shared_ptr<const tok::Tokenizer> tokenizer;  // null with --skip-tokenizer-init
  std::optional<tok::KimiControlIds> control_ids;   // set with a tokenizer
  ModelCard card;
  Metrics* metrics = nullptr;
  std::atomic<HealthState> health{HealthState::kLoading};
  std::string api_key;  // empty: no authentication

  bool has_tokenizer() const { return tokenizer != nullptr; }
};

}  // namespace kl
