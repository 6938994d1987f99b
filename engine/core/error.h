// The project's one exception type: loaders and validators throw kl::Error with a message that
// names the offending thing (file, field, tensor); boundaries (CLI, HTTP, gRPC) turn it into an
// exit code or a status. Nothing else is thrown across module boundaries.
#pragma once

#include <stdexcept>
#include <string>

#include <fmt/format.h>

namespace kl {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Throws kl::Error with a fmt-formatted message.
template <typename... Args>
[[noreturn]] void fail(fmt::format_string<Args...> f, Args&&... args) {
  throw Error(fmt::format(f, std::forward<Args>(args)...));
}

// Precondition check that stays on in release builds (cheap checks at launchers and loaders).
#define KL_CHECK(cond, ...)               \
  do {                                    \
    if (!(cond)) ::kl::fail(__VA_ARGS__); \
  } while (0)

}  // namespace kl
