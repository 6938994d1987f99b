// Kimi tokenizer directory loading and the spec §6.1 special-token table (see kimi_tokenizer.h).
#include "server/tokenizer/kimi_tokenizer.h"

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "engine/core/error.h"
#include "server/tokenizer/base64_sha256.h"

namespace kl::tok {

namespace {

std::optional<std::string> read_file(const std::filesystem::path& p) {
  std::ifstream f(p, std::ios::binary);
  if (!f) return std::nullopt;
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

}  // namespace

const std::vector<KimiNamedSpecial>& kimi_named_specials() {
  static const std::vector<KimiNamedSpecial> kTable = {
      {0, "[BOS]", true},
      {1, "[EOS]", true},
      {2, "<|im_end|>", true},
      {3, "<|im_user|>", true},
      {4, "<|im_assistant|>", true},
      {6, "<|start_header_id|>", true},
      {7, "<|end_header_id|>", true},
      {9, "[EOT]", true},
      {10, "<|im_system|>", true},
      {11, "<|tool_calls_section_begin|>", false},
      {12, "<|tool_calls_section_end|>", false},
      {13, "<|tool_call_begin|>", false},
      {14, "<|tool_call_argument_begin|>", false},
      {15, "<|tool_call_end|>", false},
      {17, "<|im_middle|>", true},
      {254, "[UNK]", true},
      {255, "[PAD]", true},
  };
  return kTable;
}

std::vector<SpecialToken> kimi_default_specials(TokenId num_regular) {
  std::map<int, const KimiNamedSpecial*> named;
  for (const auto& n : kimi_named_specials()) named[n.offset] = &n;
  std::vector<SpecialToken> out;
  for (int off = 0; off < kKimiNumReservedSpecial; ++off) {
    const TokenId id = num_regular + off;
    const auto it = named.find(off);
    if (it != named.end()) {
      out.push_back({it->second->text, id, it->second->special});
    } else {
      out.push_back({"<|reserved_token_" + std::to_string(id) + "|>", id, true});
    }
  }
  return out;
}

std::optional<std::vector<SpecialToken>> kimi_specials_from_config(const nlohmann::json& config,
                                                                   TokenId num_regular) {
  if (!config.is_object() || !config.contains("added_tokens_decoder")) return std::nullopt;
  const auto& dec = config.at("added_tokens_decoder");
  if (!dec.is_object()) fail("tokenizer_config.json: added_tokens_decoder is not an object");
  std::map<TokenId, SpecialToken> by_id;
  for (const auto& [key, val] : dec.items()) {
    TokenId id = 0;
    try {
      size_t used = 0;
      const long v = std::stol(key, &used);
      if (used != key.size() || v < 0 || v > INT32_MAX / 2) throw std::invalid_argument(key);
      id = static_cast<TokenId>(v);
    } catch (const std::exception&) {
      fail("tokenizer_config.json: added_tokens_decoder key '{}' is not a token id", key);
    }
    if (!val.is_object() || !val.contains("content") || !val["content"].is_string())
      fail("tokenizer_config.json: added_tokens_decoder[{}] has no string 'content'", key);
    SpecialToken s{val["content"].get<std::string>(), id, true};
    if (val.contains("special") && val["special"].is_boolean())
      s.special = val["special"].get<bool>();
    by_id[id] = std::move(s);
  }
  for (int off = 0; off < kKimiNumReservedSpecial; ++off) {
    const TokenId id = num_regular + off;
    if (!by_id.count(id)) by_id[id] = {"<|reserved_token_" + std::to_string(id) + "|>", id, true};
  }
  std::vector<SpecialToken> out;
  for (auto& [id, s] : by_id) out.push_back(std::move(s));
  return out;
}

KimiControlIds KimiControlIds::resolve(const Tokenizer& tok) {
  KimiControlIds ids;
  auto need = [&](const char* text) {
    auto id = tok.special_id(text);
    if (!id) fail("tokenizer: the vocabulary has no control token {}", text);
    return *id;
  };
  auto opt = [&](const char* text) { return tok.special_id(text).value_or(-1); };
  ids.im_end = need("<|im_end|>");
  ids.im_user = need("<|im_user|>");
  ids.im_assistant = need("<|im_assistant|>");
  ids.im_system = need("<|im_system|>");
  ids.im_middle = need("<|im_middle|>");
  ids.tool_calls_section_begin = need("<|tool_calls_section_begin|>");
  ids.tool_calls_section_end = need("<|tool_calls_section_end|>");
  ids.tool_call_begin = need("<|tool_call_begin|>");
  ids.tool_call_argument_begin = need("<|tool_call_argument_begin|>");
  ids.tool_call_end = need("<|tool_call_end|>");
  ids.bos = opt("[BOS]");
  ids.eos = opt("[EOS]");
  ids.eot = opt("[EOT]");
  ids.pad = opt("[PAD]");
  ids.unk = opt("[UNK]");
  return ids;
}

std::vector<TokenId> KimiControlIds::stop_ids() const {
  std::vector<TokenId> out;
  for (TokenId id : {im_end, eos, eot})
    if (id >= 0) out.push_back(id);
  return out;
}

std::shared_ptr<const Tokenizer> make_kimi_tokenizer(BpeRanks ranks,
                                                     std::vector<SpecialToken> specials) {
  TokenizerOptions opt;
  opt.kimi_cutting = true;
  return std::make_shared<const Tokenizer>(std::move(ranks), std::move(specials),
                                           Pretokenizer::kimi(), opt);
}

KimiTokenizerFiles load_kimi_tokenizer(const std::string& dir) {
  namespace fs = std::filesystem;
  const fs::path root(dir);
  const fs::path model = root / "tiktoken.model";
  if (!fs::exists(model)) fail("tokenizer: {} not found", model.string());
  BpeRanks ranks = Tokenizer::load_tiktoken_ranks(model.string());
  // Special ids start at len(mergeable_ranks), as in tokenization_kimi.py.
  const TokenId num_regular = static_cast<TokenId>(ranks.size());
  if (ranks.rank_end() != num_regular)
    fail("tokenizer: {} has gaps in its ranks ({} tokens, highest rank {})", model.string(),
         ranks.size(), ranks.rank_end() - 1);

  KimiTokenizerFiles out;
  nlohmann::json config = nlohmann::json::object();
  const fs::path config_path = root / "tokenizer_config.json";
  if (auto text = read_file(config_path)) {
    config = nlohmann::json::parse(*text, nullptr, /*allow_exceptions=*/false);
    if (config.is_discarded() || !config.is_object())
      fail("tokenizer: {} is not a JSON object", config_path.string());
  }
  std::vector<SpecialToken> specials;
  if (auto from_config = kimi_specials_from_config(config, num_regular)) {
    specials = std::move(*from_config);
    out.specials_from_config = true;
  } else {
    specials = kimi_default_specials(num_regular);
  }
  if (config.contains("chat_template")) {
    const auto& ct = config["chat_template"];
    if (ct.is_string()) {
      out.chat_template = ct.get<std::string>();
    } else if (ct.is_array()) {
      // HF allows a list of named templates; "default" is the one apply_chat_template uses.
      for (const auto& t : ct)
        if (t.is_object() && t.value("name", "") == "default" && t.contains("template") &&
            t["template"].is_string())
          out.chat_template = t["template"].get<std::string>();
    }
  }
  if (!out.chat_template) out.chat_template = read_file(root / "chat_template.jinja");
  if (out.chat_template) out.chat_template_sha256 = sha256_hex(*out.chat_template);

  out.tokenizer = make_kimi_tokenizer(std::move(ranks), std::move(specials));
  out.ids = KimiControlIds::resolve(*out.tokenizer);
  return out;
}

}  // namespace kl::tok
