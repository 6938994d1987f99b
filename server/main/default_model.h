// The embedded default model: a small Kimi-Linear-shaped checkpoint (every layer kind: KDA and
// MLA mixers, a dense and MoE FFNs) with random weights and the project's own tokenizer, written
// on first use into a cache directory, so `klserve serve` works with no checkpoint and no GPU.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

namespace kl {

// Its config.json (vocabulary = the default tokenizer's 2,304 ids).
nlohmann::json default_model_config();

// $KLSERVE_CACHE_DIR, else $XDG_CACHE_HOME/klserve, else $HOME/.cache/klserve, else /tmp/klserve;
// the model lives in "<cache>/default-model-v2".
std::string default_model_dir();

// Creates the model directory if it is missing or incomplete (written into a temporary sibling
// and renamed, so a crash never leaves a half-written model). Returns its path.
std::string ensure_default_model();

}  // namespace kl
