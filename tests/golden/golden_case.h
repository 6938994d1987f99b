// A golden reference case on disk (../shared/golden/<case> or tests/data/golden/<case>): the
// hub-layout model, golden.json (prompts, greedy ids) and the reference logits/activations.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "engine/checkpoint/weight_store.h"
#include "models/model_config.h"
#include "models/model_weights.h"

namespace kl::test {

struct GoldenPrompt {
  std::string name;
  std::vector<int32_t> input_ids;
  std::vector<int32_t> greedy_ids;
  std::vector<float> greedy_margin;
  std::vector<float> prefill_logits;  // [len, vocab]; empty in compact cases
  std::vector<float> decode_logits;   // [num_generate, vocab]
};

struct GoldenCase {
  std::string name;
  std::string dir;
  ModelConfig config;
  std::unique_ptr<WeightStore> store;
  ModelWeights weights;
  std::vector<GoldenPrompt> prompts;
  std::string activations_prompt;                         // e.g. "p4"
  std::map<std::string, std::vector<float>> activations;  // empty in compact cases
};

// Loads and validates a case directory; throws kl::Error naming what is wrong.
GoldenCase load_golden_case(const std::string& dir);

// Directories of the cases the golden tier runs: tiny-a from the golden dir (when present) and
// every case under tests/data/golden of the source tree. KL_GOLDEN_ONLY=name[,name...] narrows
// this to the named cases, in that order (throws kl::Error for a name not found).
std::vector<std::string> golden_case_dirs();

}  // namespace kl::test
