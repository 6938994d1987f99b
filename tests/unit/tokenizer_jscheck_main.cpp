// Driver of the js-tiktoken comparison (ctest, not Catch2, because it needs files made by node):
//   kl_tokenizer_jscheck corpus DIR   writes DIR/corpus.json (the seeded multilingual corpus)
//   kl_tokenizer_jscheck compare DIR  loads DIR/<enc>.tiktoken + <enc>.json (ranks, pattern and
//                                     specials exported from js-tiktoken) and checks that our
//                                     tokenizer gives exactly js-tiktoken's ids
//                                     (DIR/<enc>.ids.json)
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include <nlohmann/json.hpp>

#include "engine/core/error.h"
#include "server/tokenizer/tokenizer.h"
#include "server/tokenizer/utf8.h"
#include "tests/unit/tokenizer_corpus.h"

namespace {

using nlohmann::json;
using namespace kl::tok;

std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) kl::fail("cannot read {} (did the node export step run?)", path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

int write_corpus(const std::string& dir) {
  std::filesystem::create_directories(dir);
  json arr = json::array();
  size_t bytes = 0;
  for (const auto& c : kl::test::tokenizer_corpus()) {
    arr.push_back({{"name", c.name}, {"text", c.text}});
    bytes += c.text.size();
  }
  // A few texts that contain special-token strings, encoded with allowed_special="all".
  json special = json::array({"a<|endoftext|>b", "<|endoftext|><|endoftext|>",
                              "x <|fim_prefix|>def<|fim_suffix|> y<|endofprompt|>"});
  std::ofstream(dir + "/corpus.json", std::ios::binary)
      << json({{"texts", arr}, {"special_texts", special}}).dump();
  std::printf("wrote %zu texts (%zu bytes) to %s/corpus.json\n", arr.size(), bytes, dir.c_str());
  return 0;
}

// Returns the number of mismatching texts.
size_t compare_encoding(const std::string& dir, const std::string& enc, const json& corpus) {
  const json meta = json::parse(slurp(dir + "/" + enc + ".json"));
  const json ids = json::parse(slurp(dir + "/" + enc + ".ids.json"));
  BpeRanks ranks = Tokenizer::load_tiktoken_ranks(dir + "/" + enc + ".tiktoken");
  std::vector<SpecialToken> specials;
  for (const auto& [text, id] : meta.at("special_tokens").items())
    specials.push_back({text, id.get<TokenId>(), true});
  const std::string js_pattern = meta.at("pat_str").get<std::string>();
  const std::string pcre = translate_pattern(js_pattern, RegexDialect::kJavaScript);
  const Tokenizer tok(std::move(ranks), std::move(specials), Pretokenizer(pcre));
  std::printf("[%s] %zu ranks, %zu specials\n  js pattern:    %s\n  pcre2 pattern: %s\n",
              enc.c_str(), tok.ranks().size(), tok.specials().size(), js_pattern.c_str(),
              pcre.c_str());

  size_t bad = 0, texts = 0, tokens = 0, bytes = 0;
  auto check = [&](const std::string& name, const std::string& text, const json& want_j,
                   bool allow_special) {
    const auto want = want_j.get<std::vector<TokenId>>();
    const auto got = tok.encode(text, allow_special);
    ++texts;
    tokens += want.size();
    bytes += text.size();
    if (got == want) {
      // Decoding must give the text back, too.
      if (tok.decode(got) != text) {
        ++bad;
        std::printf("  MISMATCH %s/%s: decode(encode(text)) != text\n", enc.c_str(), name.c_str());
      }
      return;
    }
    ++bad;
    size_t i = 0;
    while (i < got.size() && i < want.size() && got[i] == want[i]) ++i;
    auto piece = [&](const std::vector<TokenId>& v, size_t from) {
      std::string s;
      for (size_t k = from; k < v.size() && k < from + 6; ++k) {
        const std::string* b = tok.token_bytes(v[k]);
        s += std::to_string(v[k]) + "=" + (b ? json(sanitize_utf8(*b)).dump() : "?") + " ";
      }
      return s;
    };
    std::printf(
        "  MISMATCH %s/%s at token %zu (ours %zu tokens, js %zu)\n    ours: %s\n    js:   %s\n",
        enc.c_str(), name.c_str(), i, got.size(), want.size(), piece(got, i).c_str(),
        piece(want, i).c_str());
  };
  const auto& texts_j = corpus.at("texts");
  const auto& enc_ids = ids.at("texts");
  if (enc_ids.size() != texts_j.size()) kl::fail("{}: id lists and corpus differ in size", enc);
  for (size_t k = 0; k < texts_j.size(); ++k)
    check(texts_j[k].at("name").get<std::string>(), texts_j[k].at("text").get<std::string>(),
          enc_ids[k], false);
  const auto& st = corpus.at("special_texts");
  for (size_t k = 0; k < st.size(); ++k)
    check("special_" + std::to_string(k), st[k].get<std::string>(), ids.at("special_texts")[k],
          true);
  std::printf("[%s] %zu texts, %zu bytes, %zu tokens compared: %zu mismatching\n", enc.c_str(),
              texts, bytes, tokens, bad);
  return bad;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s corpus|compare DIR\n", argv[0]);
    return 2;
  }
  const std::string mode = argv[1], dir = argv[2];
  try {
    if (mode == "corpus") return write_corpus(dir);
    if (mode != "compare") {
      std::fprintf(stderr, "unknown mode %s\n", mode.c_str());
      return 2;
    }
    const json corpus = json::parse(slurp(dir + "/corpus.json"));
    size_t bad = 0;
    for (const char* enc : {"cl100k_base", "o200k_base"}) bad += compare_encoding(dir, enc, corpus);
    if (bad != 0) {
      std::printf("FAILED: %zu texts differ from js-tiktoken\n", bad);
      return 1;
    }
    std::printf("OK: identical to js-tiktoken on every text of both encodings\n");
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
