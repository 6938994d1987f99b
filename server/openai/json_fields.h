// Typed, range-checked reads of request fields: null counts as absent, unknown fields are never
// looked at (so they are ignored), and every wrong type or range is a 400 naming the field.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace kl::openai {

// Parses a request body: malformed JSON, a top-level value that is not an object, or nesting
// deeper than `max_depth` is a 400.
nlohmann::json parse_json_object(const std::string& body, int max_depth = 64);

class FieldReader {
 public:
  explicit FieldReader(const nlohmann::json& obj) : obj_(obj) {}

  // The value, or nullptr when absent or null.
  const nlohmann::json* get(std::string_view name) const;
  bool has(std::string_view name) const { return get(name) != nullptr; }

  std::optional<bool> boolean(std::string_view name) const;
  // Integers; an integral float (1e3) is accepted, a fraction or a string is not.
  std::optional<int64_t> integer(std::string_view name, int64_t lo, int64_t hi) const;
  // Finite numbers in [lo, hi].
  std::optional<double> number(std::string_view name, double lo, double hi) const;
  std::optional<std::string> string(std::string_view name) const;
  // A string or a list of strings (OpenAI's `stop`), at most max_items of at most max_len bytes.
  std::vector<std::string> string_or_list(std::string_view name, size_t max_items,
                                          size_t max_len) const;
  // A list of integers in [lo, hi], at most max_items.
  std::vector<int32_t> int_list(std::string_view name, int64_t lo, int64_t hi,
                                size_t max_items) const;
  const nlohmann::json* object(std::string_view name) const;
  const nlohmann::json* array(std::string_view name) const;

 private:
  const nlohmann::json& obj_;
};

// A JSON value's type for messages ("string", "integer", "number", "boolean", "array", ...).
const char* json_type_name(const nlohmann::json& v);
// The integer value of `v` if it is an integer (or an integral float) within [lo, hi].
std::optional<int64_t> as_integer(const nlohmann::json& v, int64_t lo, int64_t hi, bool* in_range);

}  // namespace kl::openai
