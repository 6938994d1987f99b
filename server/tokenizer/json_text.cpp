// Python-compatible JSON serialisation (see json_text.h).
#include "server/tokenizer/json_text.h"

#include <cmath>

namespace kl::tok {

namespace {

void dump_string(const std::string& s, std::string& out) {
  static constexpr char kHex[] = "0123456789abcdef";
  out.push_back('"');
  for (char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      default:
        if (c < 0x20) {
          out += "\\u00";
          out.push_back(kHex[c >> 4]);
          out.push_back(kHex[c & 15]);
        } else {
          out.push_back(ch);  // ensure_ascii=False: everything else verbatim
        }
    }
  }
  out.push_back('"');
}

void dump(const nlohmann::json& v, std::string& out) {
  switch (v.type()) {
    case nlohmann::json::value_t::object: {
      out.push_back('{');
      bool first = true;
      for (auto it = v.begin(); it != v.end(); ++it) {
        if (!first) out += ", ";
        first = false;
        dump_string(it.key(), out);
        out += ": ";
        dump(it.value(), out);
      }
      out.push_back('}');
      break;
    }
    case nlohmann::json::value_t::array: {
      out.push_back('[');
      bool first = true;
      for (const auto& e : v) {
        if (!first) out += ", ";
        first = false;
        dump(e, out);
      }
      out.push_back(']');
      break;
    }
    case nlohmann::json::value_t::string:
      dump_string(v.get_ref<const std::string&>(), out);
      break;
    case nlohmann::json::value_t::number_float: {
      const double d = v.get<double>();
      if (std::isnan(d)) {
        out += "NaN";
      } else if (std::isinf(d)) {
        out += d > 0 ? "Infinity" : "-Infinity";
      } else {
        // nlohmann prints the shortest round-trip form with Python's exponent style
        // (1e-05, 1e+16) and keeps ".0" on integral values, as repr(float) does.
        out += v.dump();
      }
      break;
    }
    case nlohmann::json::value_t::discarded:
      out += "null";
      break;
    default:
      out += v.dump();
      break;  // null, booleans, integers: identical spelling
  }
}

}  // namespace

std::string python_json_dumps(const nlohmann::json& value) {
  std::string out;
  dump(value, out);
  return out;
}

}  // namespace kl::tok
