// Translation of tiktoken pre-tokenizer patterns (written for Rust fancy-regex or for JavaScript
// RegExp with the `u` flag) into PCRE2 syntax with the same meaning under PCRE2_UTF | PCRE2_UCP.
#pragma once

#include <string>
#include <string_view>

namespace kl::tok {

enum class RegexDialect {
  // tiktoken's engine (Rust regex / fancy-regex): \s is the Unicode White_Space property, a bare
  // \p{Name} that is not a general category is a Script (not Script_Extensions), and classes may
  // use `&&` intersection.
  kRust,
  // JavaScript RegExp with the `u` flag (js-tiktoken): \s is ECMAScript's WhiteSpace +
  // LineTerminator set (includes U+FEFF, excludes U+0085), \d is ASCII only.
  kJavaScript,
};

// Returns the PCRE2 pattern. Why each rewrite is needed:
//  - PCRE2's UCP \s is \p{Z} + \h + \v, which includes U+180E (and U+0085 for JS): neither Rust
//    nor JS agree, so \s / \S become explicit classes of the dialect's set.
//  - PCRE2 >= 10.40 reads a bare \p{Han} as Script_Extensions (so CJK punctuation such as U+3002
//    would count as Han); Rust reads it as Script: it becomes \p{sc:Han}.
//  - PCRE2 10.42 has no class intersection and would read `&&` as literal '&'. A class
//    [A&&[^B]] whose A is made of general categories becomes one negated class: the general
//    categories partition the code points, so A & ~B = ~(complement(A) | B). Any other
//    intersection becomes (?:(?![B])[A]) (slower, same meaning).
// Throws kl::Error on constructs it does not know how to translate faithfully.
std::string translate_pattern(std::string_view pattern, RegexDialect dialect);

}  // namespace kl::tok
