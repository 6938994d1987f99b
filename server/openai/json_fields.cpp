// Request-field reading with 400s that name the field.
#include "server/openai/json_fields.h"

#include <cmath>
#include <limits>

#include "server/openai/api_error.h"

namespace kl::openai {

using nlohmann::json;

namespace {
struct TooDeep {};
}  // namespace

json parse_json_object(const std::string& body, int max_depth) {
  if (body.empty()) throw ApiError(400, "the request body is empty; expected a JSON object");
  json j;
  try {
    // The callback bounds nesting before the parser builds it (deeply nested input is a DoS).
    j = json::parse(body, [max_depth](int depth, json::parse_event_t, json&) {
      if (depth > max_depth) throw TooDeep{};
      return true;
    });
  } catch (const TooDeep&) {
    throw ApiError(400, fmt::format("the request JSON is nested deeper than {} levels", max_depth));
  } catch (const json::exception& e) {
    throw ApiError(400, fmt::format("the request body is not valid JSON: {}", e.what()));
  }
  if (!j.is_object())
    throw ApiError(
        400, fmt::format("the request body must be a JSON object, got {}", json_type_name(j)));
  return j;
}

const char* json_type_name(const json& v) {
  switch (v.type()) {
    case json::value_t::null:
      return "null";
    case json::value_t::boolean:
      return "boolean";
    case json::value_t::number_integer:
    case json::value_t::number_unsigned:
      return "integer";
    case json::value_t::number_float:
      return "number";
    case json::value_t::string:
      return "string";
    case json::value_t::array:
      return "array";
    case json::value_t::object:
      return "object";
    default:
      return "value";
  }
}

std::optional<int64_t> as_integer(const json& v, int64_t lo, int64_t hi, bool* in_range) {
  *in_range = false;
  if (v.is_number_unsigned()) {
    const uint64_t u = v.get<uint64_t>();
    if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return 0;
    const int64_t i = static_cast<int64_t>(u);
    *in_range = i >= lo && i <= hi;
    return i;
  }
  if (v.is_number_integer()) {
    const int64_t i = v.get<int64_t>();
    *in_range = i >= lo && i <= hi;
    return i;
  }
  if (v.is_number_float()) {
    const double d = v.get<double>();
    if (!std::isfinite(d) || std::floor(d) != d) return std::nullopt;
    if (d < -9.2e18 || d > 9.2e18) return 0;
    const int64_t i = static_cast<int64_t>(d);
    *in_range = i >= lo && i <= hi;
    return i;
  }
  return std::nullopt;
}

const json* FieldReader::get(std::string_view name) const {
  auto it = obj_.find(name);
  if (it == obj_.end() || it->is_null()) return nullptr;
  return &*it;
}

std::optional<bool> FieldReader::boolean(std::string_view name) const {
  const json* v = get(name);
  if (!v) return std::nullopt;
  if (!v->is_boolean())
    fail_field(std::string(name), "'{}' must be a boolean, got {}", name, json_type_name(*v));
  return v->get<bool>();
}

std::optional<int64_t> FieldReader::integer(std::string_view name, int64_t lo, int64_t hi) const {
  const json* v = get(name);
  if (!v) return std::nullopt;
  bool ok = false;
  auto i = as_integer(*v, lo, hi, &ok);
  if (!i)
    fail_field(std::string(name), "'{}' must be an integer, got {}", name, json_type_name(*v));
  if (!ok)
    fail_field(std::string(name), "'{}' must be in [{}, {}], got {}", name, lo, hi, v->dump());
  return i;
}

std::optional<double> FieldReader::number(std::string_view name, double lo, double hi) const {
  const json* v = get(name);
  if (!v) return std::nullopt;
  if (!v->is_number())
    fail_field(std::string(name), "'{}' must be a number, got {}", name, json_type_name(*v));
  const double d = v->get<double>();
  if (!std::isfinite(d) || d < lo || d > hi)
    fail_field(std::string(name), "'{}' must be a finite number in [{}, {}], got {}", name, lo, hi,
               v->dump());
  return d;
}

std::optional<std::string> FieldReader::string(std::string_view name) const {
  const json* v = get(name);
  if (!v) return std::nullopt;
  if (!v->is_string())
    fail_field(std::string(name), "'{}' must be a string, got {}", name, json_type_name(*v));
  return v->get<std::string>();
}

std::vector<std::string> FieldReader::string_or_list(std::string_view name, size_t max_items,
                                                     size_t max_len) const {
  std::vector<std::string> out;
  const json* v = get(name);
  if (!v) return out;
  const std::string field(name);
  auto take = [&](const json& s) {
    if (!s.is_string())
      fail_field(field, "'{}' must be a string or a list of strings, got a list with a {}", name,
                 json_type_name(s));
    const auto& str = s.get_ref<const std::string&>();
    if (str.size() > max_len)
      fail_field(field, "each '{}' string must be at most {} bytes, got {}", name, max_len,
                 str.size());
    out.push_back(str);
  };
  if (v->is_string()) {
    take(*v);
  } else if (v->is_array()) {
    if (v->size() > max_items)
      fail_field(field, "'{}' may hold at most {} strings, got {}", name, max_items, v->size());
    for (const json& s : *v) take(s);
  } else {
    fail_field(field, "'{}' must be a string or a list of strings, got {}", name,
               json_type_name(*v));
  }
  return out;
}

std::vector<int32_t> FieldReader::int_list(std::string_view name, int64_t lo, int64_t hi,
                                           size_t max_items) const {
  std::vector<int32_t> out;
  const json* v = get(name);
  if (!v) return out;
  const std::string field(name);
  if (!v->is_array())
    fail_field(field, "'{}' must be a list of integers, got {}", name, json_type_name(*v));
  if (v->size() > max_items)
    fail_field(field, "'{}' may hold at most {} entries, got {}", name, max_items, v->size());
  for (const json& e : *v) {
    bool ok = false;
    auto i = as_integer(e, lo, hi, &ok);
    if (!i)
      fail_field(field, "'{}' must be a list of integers, got a list with a {}", name,
                 json_type_name(e));
    if (!ok) fail_field(field, "'{}' entries must be in [{}, {}], got {}", name, lo, hi, e.dump());
    out.push_back(static_cast<int32_t>(*i));
  }
  return out;
}

const json* FieldReader::object(std::string_view name) const {
  const json* v = get(name);
  if (v && !v->is_object())
    fail_field(std::string(name), "'{}' must be an object, got {}", name, json_type_name(*v));
  return v;
}

const json* FieldReader::array(std::string_view name) const {
  const json* v = get(name);
  if (v && !v->is_array())
    fail_field(std::string(name), "'{}' must be an array, got {}", name, json_type_name(*v));
  return v;
}

}  // namespace kl::openai
