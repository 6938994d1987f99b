// Loading a Kimi checkpoint's tokenizer directory (tiktoken.model + tokenizer_config.json): the
// special-token table (from added_tokens_decoder, else spec §6.1), the Kimi pattern and cutting,
// the control-token ids the chat template and parsers need, and the chat_template fingerprint.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "server/tokenizer/tokenizer.h"

namespace kl::tok {

// Kimi's reserved special slots after the regular tokens. The HF code enumerates two more, but
// only ids below num_regular + 256 exist in the embedding, so we never create them.
inline constexpr int kKimiNumReservedSpecial = 256;

// The spec §6.1 table as offsets from the first special id (163584 for the real vocabulary).
struct KimiNamedSpecial {
  int offset;
  const char* text;
  bool special;  // false for the tool-call markers (kept by skip_special_tokens, as in HF)
};
const std::vector<KimiNamedSpecial>& kimi_named_specials();

// The full special list for `num_regular` regular tokens, without added_tokens_decoder: named
// slots from the table, the rest "<|reserved_token_{id}|>".
std::vector<SpecialToken> kimi_default_specials(TokenId num_regular);

// Special tokens as tokenizer_config.json declares them: added_tokens_decoder entries, and the
// reserved names for the other slots of the 256-slot block. nullopt when the config has no
// added_tokens_decoder.
std::optional<std::vector<SpecialToken>> kimi_specials_from_config(const nlohmann::json& config,
                                                                   TokenId num_regular);

// Ids of the control tokens, looked up by text in a loaded tokenizer.
struct KimiControlIds {
  TokenId bos = -1, eos = -1, im_end = -1, im_user = -1, im_assistant = -1, im_system = -1,
          im_middle = -1, eot = -1, pad = -1, unk = -1;
  TokenId tool_calls_section_begin = -1, tool_calls_section_end = -1, tool_call_begin = -1,
          tool_call_argument_begin = -1, tool_call_end = -1;
  // Throws kl::Error naming the first control token the tokenizer lacks (those the template and
  // tool parser need; bos/eos/eot/pad/unk may be absent and stay -1).
  static KimiControlIds resolve(const Tokenizer& tok);
  // The generation stop set {im_end, eos, eot} (those present).
  std::vector<TokenId> stop_ids() const;
};

struct KimiTokenizerFiles {
  std::shared_ptr<const Tokenizer> tokenizer;
  KimiControlIds ids;
  // The checkpoint's chat_template (tokenizer_config.json "chat_template", or chat_template.jinja
  // beside it), if any, and its sha256.
  std::optional<std::string> chat_template;
  std::string chat_template_sha256;
  bool specials_from_config = false;
};

// Loads `dir`/tiktoken.model and (optional) `dir`/tokenizer_config.json. Throws kl::Error naming
// the file on any problem. Does not log (the caller logs what it found).
KimiTokenizerFiles load_kimi_tokenizer(const std::string& dir);

// Builds a Kimi-mode tokenizer (Kimi pattern + cutting) from ranks and specials.
std::shared_ptr<const Tokenizer> make_kimi_tokenizer(BpeRanks ranks,
                                                     std::vector<SpecialToken> specials);

}  // namespace kl::tok
