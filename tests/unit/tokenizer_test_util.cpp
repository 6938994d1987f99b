// Shared tokenizer-test fixtures (see tokenizer_test_util.h).
#include "tests/unit/tokenizer_test_util.h"

#include <fstream>
#include <map>
#include <mutex>

#include "server/tokenizer/bpe_trainer.h"

namespace kl::test {

const std::string& tokenizer_training_text() {
  static const std::string kText = [] {
    std::string t =
        "You are a helpful assistant provided by Moonshot-AI. Is 123 a prime? "
        "Tell me about the french revolution. The French Revolution was a period of radical "
        "political and social change in France. user assistant system tool tool_declare "
        "functions.get_weather:0 {\"city\": \"Tokyo\", \"unit\": \"celsius\"} ## Return of "
        "def main():\n    return 0\n\nint main() { return 0; }\r\n"
        "你好，世界！我们的模型很快。日本語のテキスト。안녕하세요 세계. مرحبا بالعالم. "
        "😀👍🏽 "
        "the quick brown fox jumps over the lazy dog 0123456789 ";
    std::string out;
    for (int i = 0; i < 8; ++i) out += t;
    return out;
  }();
  return kText;
}

std::shared_ptr<const kl::tok::Tokenizer> small_kimi_tokenizer(int num_regular) {
  static std::mutex mu;
  static std::map<int, std::shared_ptr<const kl::tok::Tokenizer>> cache;
  std::lock_guard<std::mutex> lock(mu);
  auto& slot = cache[num_regular];
  if (!slot) {
    const auto pre = kl::tok::Pretokenizer::kimi();
    auto ranks = kl::tok::train_bpe(tokenizer_training_text(), pre, num_regular);
    slot =
        kl::tok::make_kimi_tokenizer(std::move(ranks), kl::tok::kimi_default_specials(num_regular));
  }
  return slot;
}

void write_tokenizer_dir(const std::string& dir, const kl::tok::BpeRanks& ranks,
                         const nlohmann::json* config) {
  std::ofstream(dir + "/tiktoken.model", std::ios::binary) << kl::tok::to_tiktoken_model(ranks);
  if (config) std::ofstream(dir + "/tokenizer_config.json", std::ios::binary) << config->dump(2);
}

}  // namespace kl::test
