// Building the embedded default model's tokenizer (see default_tokenizer.h).
#include "server/tokenizer/default_tokenizer.h"

#include <filesystem>
#include <fstream>

#include "engine/core/error.h"
#include "server/tokenizer/bpe_trainer.h"
#include "server/tokenizer/chat_template.h"

namespace kl::tok {

namespace {

// Written for this purpose; any edit changes the default tokenizer (and so the default model's
// outputs), so treat it as frozen.
constexpr std::string_view kCorpus = R"CORPUS(
klserve is an inference server for the Kimi Linear family of language models. It reads a
checkpoint, plans every step of a batch on one engine thread, and streams the generated text
back to its clients over HTTP and gRPC. The model mixes two kinds of layers: Kimi Delta
Attention layers keep a fixed-size recurrent state per sequence, and Multi-head Latent Attention
layers keep a compressed cache of keys and values in pages of sixty-four tokens. Because most
layers are linear, a long conversation needs far less memory than with a plain transformer.

When a request arrives, the server renders the conversation with the chat template, turns the
text into token ids, and hands the ids to the scheduler. The scheduler decides how many tokens
of each sequence to compute in the next step, under a budget, so that long prompts are split
into chunks and short decode steps are not starved. After each step the sampler picks the next
token of every sequence, the detokenizer turns it into text, and stop strings are checked. If
the model calls a tool, the parser turns its output into structured tool calls.

Questions people often ask: How fast is it? What is the context length? Which GPUs are
supported? Can I run it without a GPU? Yes: the reference executor runs on the CPU, slowly but
exactly, and the tests use it. The answers depend on the hardware, the batch size and the
length of the prompts. We measure throughput in tokens per second and latency in milliseconds.

Once upon a time, in a small village by the sea, there lived an old fisherman and his
daughter. Every morning they sailed out before sunrise, and every evening they came home with
their nets full of fish. One day a storm came from the north. The waves were higher than the
houses, the wind tore the sails, and the little boat was thrown onto the rocks. But the
daughter held the rudder, the father pulled the ropes, and together they brought the boat safely
back to the harbour. The whole village came down to the shore to welcome them home.

The weather today is sunny with a light breeze from the west. Temperatures will reach
twenty-four degrees in the afternoon and fall to twelve degrees at night. Tomorrow brings clouds
and a chance of rain in the evening. Please remember your umbrella, your keys and your phone.

def greet(name: str) -> str:
    """Return a friendly greeting."""
    if not name:
        raise ValueError("name must not be empty")
    return f"Hello, {name}!"

for i in range(10):
    print(i, i * i, greet("world"))

#include <cstdio>
#include <string>
#include <vector>

int main(int argc, char** argv) {
  std::vector<std::string> args(argv, argv + argc);
  for (const auto& a : args) std::printf("%s\n", a.c_str());
  return args.empty() ? 1 : 0;
}

function add(a, b) { return a + b; }
const result = await fetch("https://example.com/api/v1/items?limit=10");
{"role": "user", "content": "What is the weather in Tokyo?", "temperature": 0.7, "stream": true}
{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object",
 "properties": {"city": {"type": "string"}, "unit": {"enum": ["celsius", "fahrenheit"]}}}}}
SELECT name, count(*) FROM orders WHERE status = 'shipped' GROUP BY name ORDER BY 2 DESC;

你好，世界！我们的模型很快。今天天气很好，我们去公园散步吧。人工智能正在改变世界。
请问你叫什么名字？我是一个语言模型，可以回答问题、写代码和翻译文本。
日本語のテキストです。今日はいい天気ですね。東京は日本の首都です。ありがとうございます。
안녕하세요! 오늘 날씨가 좋네요. 저는 언어 모델입니다. 감사합니다.
مرحبا بالعالم! كيف حالك اليوم؟ شكرا جزيلا.
Привет, мир! Как дела? Спасибо. Bonjour le monde ! Ça va ? Merci beaucoup. Hallo Welt!
¿Cómo estás? Estoy bien, gracias. Grüße aus München. Ελληνικά: Καλημέρα κόσμε.
Emoji: 😀 😂 👍 ❤️ 🎉 🚀 ✅ ❌ ⭐ 🔥
0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 20 24 25 30 32 42 48 50 64 100 128 200 256 365 500
512 1000 1024 2023 2024 2025 4096 3.14 2.718 1.5 0.5 -1 +1 1e-6 100% $9.99 #1 @user
)CORPUS";

}  // namespace

std::string_view default_tokenizer_corpus() {
  return kCorpus;
}

BpeRanks train_default_ranks(TokenId num_regular) {
  // Numbers are common in chats: add every 1-3 digit group so that they have tokens too.
  std::string text(kCorpus);
  for (int i = 0; i < 1000; ++i) text += ' ' + std::to_string(i);
  return train_bpe(text, Pretokenizer::kimi(), num_regular);
}

nlohmann::json default_tokenizer_config(TokenId num_regular) {
  nlohmann::json added = nlohmann::json::object();
  for (const auto& n : kimi_named_specials()) {
    added[std::to_string(num_regular + n.offset)] = {
        {"content", n.text}, {"lstrip", false},      {"normalized", false},
        {"rstrip", false},   {"single_word", false}, {"special", n.special}};
  }
  return {
      {"added_tokens_decoder", added},
      {"bos_token", "[BOS]"},
      {"eos_token", "[EOS]"},
      {"pad_token", "[PAD]"},
      {"unk_token", "[UNK]"},
      {"chat_template", std::string(kBuiltinKimiChatTemplate)},
      {"tokenizer_class", "TikTokenTokenizer"},
      {"model_max_length", 1048576},
  };
}

void write_default_tokenizer(const std::string& dir, TokenId num_regular) {
  std::filesystem::create_directories(dir);
  const BpeRanks ranks = train_default_ranks(num_regular);
  {
    std::ofstream f(dir + "/tiktoken.model", std::ios::binary);
    if (!f) fail("cannot write {}/tiktoken.model", dir);
    f << to_tiktoken_model(ranks);
  }
  std::ofstream f(dir + "/tokenizer_config.json", std::ios::binary);
  if (!f) fail("cannot write {}/tokenizer_config.json", dir);
  f << default_tokenizer_config(num_regular).dump(2) << '\n';
}

}  // namespace kl::tok
