// Kimi tokenizer loading (synthetic tiktoken.model + tokenizer_config.json), the spec §6.1
// special table, special-token handling in encode, Kimi's input cutting, and the default
// model's self-built tokenizer.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>

#include "engine/core/error.h"
#include "server/tokenizer/base64_sha256.h"
#include "server/tokenizer/bpe_trainer.h"
#include "server/tokenizer/chat_template.h"
#include "server/tokenizer/default_tokenizer.h"
#include "server/tokenizer/utf8.h"
#include "tests/support/test_support.h"
#include "tests/unit/tokenizer_test_util.h"

using namespace kl::tok;
using nlohmann::json;

namespace {
BpeRanks small_ranks(int n = 512) {
  return train_bpe(kl::test::tokenizer_training_text(), Pretokenizer::kimi(), n);
}
}  // namespace

TEST_CASE("Kimi loader without added_tokens_decoder uses the spec table", "[tokenizer][kimi]") {
  kl::test::TempDir dir;
  kl::test::write_tokenizer_dir(dir.path(), small_ranks(), nullptr);
  const auto files = load_kimi_tokenizer(dir.path());
  const Tokenizer& tok = *files.tokenizer;
  CHECK_FALSE(files.specials_from_config);
  CHECK(tok.num_regular() == 512);
  CHECK(tok.vocab_size() == 512 + 256);
  // Offsets of spec §6.1 (163584 + k in the real vocabulary).
  CHECK(files.ids.bos == 512);
  CHECK(files.ids.eos == 513);
  CHECK(files.ids.im_end == 514);
  CHECK(files.ids.im_user == 515);
  CHECK(files.ids.im_assistant == 516);
  CHECK(files.ids.eot == 521);
  CHECK(files.ids.im_system == 522);
  CHECK(files.ids.tool_calls_section_begin == 523);
  CHECK(files.ids.tool_call_end == 527);
  CHECK(files.ids.im_middle == 529);
  CHECK(files.ids.unk == 512 + 254);
  CHECK(files.ids.pad == 512 + 255);
  CHECK(tok.special_id("<|start_header_id|>").value() == 518);
  CHECK(tok.special_id("<|reserved_token_517|>").value() == 517);
  CHECK_FALSE(tok.special_id("<|reserved_token_768|>").has_value());  // never past the block
  CHECK(files.ids.stop_ids() == std::vector<TokenId>{514, 513, 521});
  CHECK_FALSE(tok.is_flagged_special(files.ids.tool_call_begin));  // kept by skip_special
  CHECK(tok.is_flagged_special(files.ids.im_end));
  CHECK_FALSE(files.chat_template.has_value());
}

TEST_CASE("Kimi loader with tokenizer_config.json", "[tokenizer][kimi]") {
  kl::test::TempDir dir;
  json cfg = {{"added_tokens_decoder",
               {{"512", {{"content", "[BOS]"}, {"special", true}}},
                {"514", {{"content", "<|im_end|>"}, {"special", true}}},
                {"515", {{"content", "<|im_user|>"}, {"special", true}}},
                {"516", {{"content", "<|im_assistant|>"}, {"special", true}}},
                {"522", {{"content", "<|im_system|>"}, {"special", true}}},
                {"523", {{"content", "<|tool_calls_section_begin|>"}, {"special", false}}},
                {"524", {{"content", "<|tool_calls_section_end|>"}, {"special", false}}},
                {"525", {{"content", "<|tool_call_begin|>"}, {"special", false}}},
                {"526", {{"content", "<|tool_call_argument_begin|>"}, {"special", false}}},
                {"527", {{"content", "<|tool_call_end|>"}, {"special", false}}},
                {"529", {{"content", "<|im_middle|>"}, {"special", true}}},
                {"530", {{"content", "<think>"}, {"special", false}}}}},
              {"chat_template", "{{ custom }}"}};
  kl::test::write_tokenizer_dir(dir.path(), small_ranks(), &cfg);
  const auto files = load_kimi_tokenizer(dir.path());
  CHECK(files.specials_from_config);
  CHECK(files.tokenizer->special_id("<think>").value() == 530);
  CHECK(files.tokenizer->special_id("<|reserved_token_513|>").value() == 513);
  CHECK(files.ids.eos == -1);  // not declared by this config
  REQUIRE(files.chat_template.has_value());
  CHECK(*files.chat_template == "{{ custom }}");
  CHECK(files.chat_template_sha256 == sha256_hex("{{ custom }}"));
  CHECK_FALSE(identify_chat_template(files.chat_template).name.has_value());
}

TEST_CASE("Kimi loader: chat_template.jinja and errors", "[tokenizer][kimi]") {
  kl::test::TempDir dir;
  kl::test::write_tokenizer_dir(dir.path(), small_ranks(), nullptr);
  std::ofstream(dir.path() + "/chat_template.jinja") << kBuiltinKimiChatTemplate;
  const auto files = load_kimi_tokenizer(dir.path());
  REQUIRE(files.chat_template.has_value());
  CHECK(identify_chat_template(files.chat_template).name.has_value());

  kl::test::TempDir empty;
  CHECK_THROWS_AS(load_kimi_tokenizer(empty.path()), kl::Error);
  std::ofstream(empty.path() + "/tiktoken.model") << "YQ== 0\n";  // lacks 255 byte tokens
  CHECK_THROWS_AS(load_kimi_tokenizer(empty.path()), kl::Error);
  kl::test::write_tokenizer_dir(empty.path(), small_ranks(), nullptr);
  std::ofstream(empty.path() + "/tokenizer_config.json") << "{not json";
  CHECK_THROWS_AS(load_kimi_tokenizer(empty.path()), kl::Error);
}

TEST_CASE("encode with and without special tokens", "[tokenizer][kimi]") {
  const auto tok = kl::test::small_kimi_tokenizer();
  const auto c = KimiControlIds::resolve(*tok);
  const std::string text = "hi<|im_end|>there<|im_user|>";
  const auto with = tok->encode(text, true);
  REQUIRE(with.size() >= 4);
  CHECK(std::count(with.begin(), with.end(), c.im_end) == 1);
  CHECK(with.back() == c.im_user);
  const auto without = tok->encode(text, false);
  for (TokenId id : without) CHECK_FALSE(tok->is_special(id));
  CHECK(tok->decode(with) == text);
  CHECK(tok->decode(without) == text);
  CHECK(tok->decode(with, /*skip_special=*/true) == "hithere");
  CHECK_THROWS_AS(tok->encode("bad \xFF utf8"), kl::Error);
}

TEST_CASE("Kimi input cutting (400,000 / 25,000 code points)", "[tokenizer][kimi]") {
  // Small limits, same rule.
  auto cut = [](const std::string& s, size_t max_chars, size_t max_run) {
    std::vector<std::string> out;
    for (auto v : kimi_cut(s, max_chars, max_run)) out.emplace_back(v);
    return out;
  };
  CHECK(cut("aaaaa", 100, 2) == std::vector<std::string>{"aa", "aa", "a"});
  // As in the Python code, a run is cut only once it exceeds the limit.
  CHECK(cut("ab   cd", 100, 2) == std::vector<std::string>{"ab  ", " cd"});
  CHECK(cut("é世😀ab", 2, 100) == std::vector<std::string>{"é世", "😀a", "b"});
  // \x1c is whitespace for Python's isspace (not for the regex).
  CHECK(cut("\x1c\x1c\x1cx", 100, 2) == std::vector<std::string>{"\x1c\x1c", "\x1cx"});
  CHECK(cut("", 10, 2).empty());  // range(0, 0, n) yields nothing

  // Full-size: 60,000 spaces encode as the pieces of 25,000-space runs would.
  const auto tok = kl::test::small_kimi_tokenizer();
  const std::string spaces(60000, ' ');
  const std::string input = spaces + "x";
  const auto ids = tok->encode(input);
  std::vector<TokenId> want;
  for (auto part : kimi_cut(input, 400000, 25000)) {
    const auto p = tok->encode(std::string(part));  // each part is within the limits
    want.insert(want.end(), p.begin(), p.end());
  }
  CHECK(ids == want);
  CHECK(kimi_cut(input, 400000, 25000).size() == 3);
  CHECK(tok->decode(ids) == input);
}

TEST_CASE("default model tokenizer is deterministic and loads like a checkpoint's",
          "[tokenizer][kimi]") {
  const BpeRanks a = train_default_ranks();
  const BpeRanks b = train_default_ranks();
  CHECK(to_tiktoken_model(a) == to_tiktoken_model(b));
  CHECK(a.size() == static_cast<size_t>(kDefaultNumRegularTokens));
  // Fingerprint of the trained vocabulary: changes only if the corpus or the trainer changes.
  // (Update this hash deliberately when the corpus or the trainer changes: the default model's
  // outputs change with it.)
  CHECK(sha256_hex(to_tiktoken_model(a)) ==
        "7f9fb58f4b8abeac844b37cf61be4e9438130c49c0eecf99e8b6177591d2289b");

  kl::test::TempDir dir;
  write_default_tokenizer(dir.path());
  const auto files = load_kimi_tokenizer(dir.path());
  CHECK(files.specials_from_config);
  CHECK(files.tokenizer->vocab_size() == kDefaultVocabSize);
  CHECK(files.ids.bos == kDefaultNumRegularTokens);
  CHECK(files.ids.im_end == kDefaultNumRegularTokens + 2);
  CHECK(files.ids.pad == kDefaultNumRegularTokens + 255);
  CHECK(identify_chat_template(files.chat_template).name.has_value());
  const std::string text = "Hello, world! 你好，世界。 def f(x): return 42";
  const auto ids = files.tokenizer->encode(text);
  CHECK(files.tokenizer->decode(ids) == text);
  CHECK(ids.size() < text.size() / 2);  // it learned something
}
