// JSON text exactly as the chat template's `tojson` filter writes it (Python json.dumps with
// ensure_ascii=False and the default ", " / ": " separators), keys sorted at every level.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

namespace kl::tok {

// nlohmann::json objects are std::maps, so keys come out sorted by UTF-8 bytes, which is Python's
// code-point order: the deep key sort HF's Kimi tokenizer applies to tools.
std::string python_json_dumps(const nlohmann::json& value);

}  // namespace kl::tok
