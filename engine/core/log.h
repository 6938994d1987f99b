// Named spdlog loggers (server, engine, sched, exec, load). Library code logs through these and
// never prints to stdout directly.
#pragma once

#include <memory>
#include <string>

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

namespace kl {

// Returns the named logger, creating it (stderr, colour when a terminal) on first use.
inline std::shared_ptr<spdlog::logger> logger(const std::string& name) {
  auto l = spdlog::get(name);
  if (!l) {
    try {
      l = spdlog::stderr_color_mt(name);
    } catch (const spdlog::spdlog_ex&) {  // created concurrently by another thread
      l = spdlog::get(name);
    }
  }
  return l;
}

}  // namespace kl
