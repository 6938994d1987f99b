// Pattern translation from Rust / JavaScript regex syntax to PCRE2 (see regex_translate.h).
#include "server/tokenizer/regex_translate.h"

#include <algorithm>
#include <array>
#include <set>
#include <vector>

#include "engine/core/error.h"

namespace kl::tok {

namespace {

// Unicode White_Space (what Rust's \s means).
constexpr std::string_view kRustSpaceItems =
    "\\t\\n\\x{0B}\\f\\r \\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}"
    "\\x{205F}\\x{3000}";
// ECMAScript WhiteSpace + LineTerminator (what JS's \s means).
constexpr std::string_view kJsSpaceItems =
    "\\t\\n\\x{0B}\\f\\r \\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}"
    "\\x{205F}\\x{3000}\\x{FEFF}";

// The 30 two-letter general categories; they partition the code space (Cn = unassigned).
constexpr std::array<std::string_view, 30> kGeneralCategories = {
    "Lu", "Ll", "Lt", "Lm", "Lo", "Mn", "Mc", "Me", "Nd", "Nl", "No", "Pc", "Pd", "Ps", "Pe",
    "Pi", "Pf", "Po", "Sm", "Sc", "Sk", "So", "Zs", "Zl", "Zp", "Cc", "Cf", "Cs", "Co", "Cn"};

bool is_major_category(std::string_view n) {
  return n.size() == 1 && std::string_view("LMNPSZC").find(n[0]) != std::string_view::npos;
}
bool is_general_category(std::string_view n) {
  if (is_major_category(n)) return true;
  return std::find(kGeneralCategories.begin(), kGeneralCategories.end(), n) !=
         kGeneralCategories.end();
}

// Expands a major or two-letter category to two-letter ones.
std::vector<std::string_view> expand_category(std::string_view n) {
  std::vector<std::string_view> out;
  for (auto gc : kGeneralCategories)
    if (gc == n || (n.size() == 1 && gc[0] == n[0])) out.push_back(gc);
  return out;
}

class Translator {
 public:
  Translator(std::string_view p, RegexDialect d) : p_(p), d_(d) {}

  std::string run() {
    std::string out;
    while (i_ < p_.size()) {
      const char c = p_[i_];
      if (c == '\\') {
        out += escape(/*in_class=*/false);
      } else if (c == '[') {
        out += char_class();
      } else {
        out.push_back(c);
        ++i_;
      }
    }
    return out;
  }

 private:
  [[noreturn]] void bad(std::string_view what) const {
    fail("pre-tokenizer pattern: {} at offset {} of '{}'", what, i_, p_);
  }

  std::string_view space_items() const {
    return d_ == RegexDialect::kRust ? kRustSpaceItems : kJsSpaceItems;
  }

  // Property name as PCRE2 should see it.
  std::string property_name(std::string_view name) const {
    if (is_general_category(name)) return std::string(name);
    for (std::string_view pre : {"Script=", "sc=", "Script:", "sc:"})
      if (name.substr(0, pre.size()) == pre) return "sc:" + std::string(name.substr(pre.size()));
    for (std::string_view pre : {"Script_Extensions=", "scx=", "scx:"})
      if (name.substr(0, pre.size()) == pre) return "scx:" + std::string(name.substr(pre.size()));
    if (name.find_first_of("=:") != std::string_view::npos) bad("unsupported property");
    if (d_ == RegexDialect::kJavaScript) {
      // JS knows bare binary properties and GC long names; we only need the short GCs here.
      bad("unsupported bare property in a JavaScript pattern");
    }
    return "sc:" + std::string(name);  // Rust: a bare name that is not a GC is a script
  }

  // Parses \p{..} / \P{..} / \pL starting at the backslash; returns (negated, name).
  std::pair<bool, std::string> parse_property() {
    const bool neg = p_[i_ + 1] == 'P';
    i_ += 2;
    if (i_ >= p_.size()) bad("truncated \\p");
    std::string name;
    if (p_[i_] == '{') {
      const size_t close = p_.find('}', i_);
      if (close == std::string_view::npos) bad("unterminated \\p{");
      name = std::string(p_.substr(i_ + 1, close - i_ - 1));
      i_ = close + 1;
    } else {
      name = std::string(1, p_[i_++]);
    }
    return {neg, name};
  }

  // One escape at p_[i_] == '\\'. Inside a class the result is class items, outside an atom.
  std::string escape(bool in_class) {
    if (i_ + 1 >= p_.size()) bad("trailing backslash");
    const char e = p_[i_ + 1];
    if (e == 'p' || e == 'P') {
      auto [neg, name] = parse_property();
      return std::string(neg ? "\\P{" : "\\p{") + property_name(name) + "}";
    }
    i_ += 2;
    switch (e) {
      case 's':
        return in_class ? std::string(space_items()) : "[" + std::string(space_items()) + "]";
      case 'S':
        if (in_class) bad("\\S inside a class");
        return "[^" + std::string(space_items()) + "]";
      case 'd':
        if (d_ == RegexDialect::kJavaScript) return in_class ? "0-9" : "[0-9]";
        return in_class ? "\\p{Nd}" : "\\p{Nd}";
      case 'D':
        if (in_class) bad("\\D inside a class");
        return d_ == RegexDialect::kJavaScript ? "[^0-9]" : "\\P{Nd}";
      case 'w':
      case 'W':
      case 'b':
      case 'B':
        bad("word-class escapes are not translated");
      default:
        return std::string("\\") + e;  // \r \n \t, escaped punctuation: same in PCRE2
    }
  }

  // Items of a class body up to (not including) its closing ']' or a top-level "&&". Records
  // whether every item is a general-category property (for the complement rewrite).
  std::string class_items(std::vector<std::string>* categories, bool* all_categories) {
    std::string out;
    *all_categories = true;
    while (i_ < p_.size() && p_[i_] != ']') {
      if (p_.substr(i_, 2) == "&&") break;
      if (p_[i_] == '\\') {
        const char e = i_ + 1 < p_.size() ? p_[i_ + 1] : '\0';
        if (e == 'p') {
          const size_t save = i_;
          auto [neg, name] = parse_property();
          if (!neg && is_general_category(name)) {
            categories->push_back(name);
          } else {
            *all_categories = false;
          }
          i_ = save;
        } else {
          *all_categories = false;
        }
        out += escape(/*in_class=*/true);
      } else if (p_[i_] == '[') {
        bad("nested class outside an intersection");
      } else {
        *all_categories = false;
        out.push_back(p_[i_++]);
      }
    }
    if (i_ >= p_.size()) bad("unterminated class");
    return out;
  }

  std::string char_class() {
    ++i_;  // '['
    bool negated = false;
    if (i_ < p_.size() && p_[i_] == '^') {
      negated = true;
      ++i_;
    }
    std::vector<std::string> cats;
    bool all_cats = false;
    std::string left = class_items(&cats, &all_cats);
    if (p_[i_] == ']') {
      ++i_;
      return std::string(negated ? "[^" : "[") + left + "]";
    }
    // "&&[^...]" intersection.
    if (negated) bad("negated class with an intersection");
    i_ += 2;
    if (p_.substr(i_, 2) != "[^") bad("intersection with something other than [^...]");
    i_ += 2;
    std::vector<std::string> rcats;
    bool rall = false;
    std::string right = class_items(&rcats, &rall);
    if (p_[i_] != ']') bad("nested intersection");
    ++i_;
    if (i_ >= p_.size() || p_[i_] != ']') bad("intersection not at the end of its class");
    ++i_;
    if (all_cats && !cats.empty()) {
      std::set<std::string_view> in;
      for (const auto& c : cats)
        for (auto gc : expand_category(c)) in.insert(gc);
      std::string comp;
      for (char major : std::string_view("LMNPSZC")) {
        std::vector<std::string_view> missing;
        size_t total = 0;
        for (auto gc : kGeneralCategories) {
          if (gc[0] != major) continue;
          ++total;
          if (!in.count(gc)) missing.push_back(gc);
        }
        if (missing.size() == total) {
          comp += std::string("\\p{") + major + "}";
        } else {
          for (auto gc : missing) comp += "\\p{" + std::string(gc) + "}";
        }
      }
      return "[^" + comp + right + "]";
    }
    return "(?:(?![" + right + "])[" + left + "])";
  }

  std::string_view p_;
  RegexDialect d_;
  size_t i_ = 0;
};

}  // namespace

std::string translate_pattern(std::string_view pattern, RegexDialect dialect) {
  return Translator(pattern, dialect).run();
}

}  // namespace kl::tok
