// SPDX-License-Identifier: MIT
#include "common/log.hpp"

#include <atomic>
#include <cstdio>
#include <mutex>
#include <set>
#include <string>

namespace portalfs::common {
namespace {
std::atomic<int> g_level{static_cast<int>(LogLevel::info)};
std::mutex g_once_mutex;
std::set<std::string, std::less<>> g_once_keys;

const char* level_name(LogLevel level) {
  switch (level) {
    case LogLevel::debug: return "debug";
    case LogLevel::info: return "info";
    case LogLevel::warn: return "warn";
    case LogLevel::error: return "error";
  }
  return "?";
}
}  // namespace

void set_log_level(LogLevel level) { g_level.store(static_cast<int>(level)); }
LogLevel log_level() { return static_cast<LogLevel>(g_level.load()); }

bool parse_log_level(std::string_view text, LogLevel& out) {
  for (auto l : {LogLevel::debug, LogLevel::info, LogLevel::warn, LogLevel::error}) {
    if (text == level_name(l)) {
      out = l;
      return true;
    }
  }
  return false;
}

void log(LogLevel level, std::string_view msg) {
  if (static_cast<int>(level) < g_level.load(std::memory_order_relaxed)) return;
  // One fprintf per line: stdio locks the stream, so lines from threads do not interleave.
  std::fprintf(stderr, "portalfs[%s]: %.*s\n", level_name(level), static_cast<int>(msg.size()),
               msg.data());
}

void log_once(LogLevel level, std::string_view key, std::string_view msg) {
  {
    std::lock_guard lock(g_once_mutex);
    if (!g_once_keys.emplace(key).second) return;
  }
  log(level, msg);
}

}  // namespace portalfs::common
