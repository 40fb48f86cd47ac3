// SPDX-License-Identifier: MIT
#include "common/log.hpp"

#include <sys/stat.h>
#include <sys/uio.h>
#include <syslog.h>
#include <systemd/sd-journal.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <set>
#include <string>
#include <vector>

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
int priority(LogLevel level) {
  switch (level) {
    case LogLevel::debug: return LOG_DEBUG;
    case LogLevel::info: return LOG_INFO;
    case LogLevel::warn: return LOG_WARNING;
    case LogLevel::error: return LOG_ERR;
  }
  return LOG_NOTICE;
}

// Whether systemd connected our stderr to the journal: JOURNAL_STREAM is "<dev>:<ino>" of that
// stream. INVOCATION_ID alone is not enough: every process a service starts inherits it, with
// its stderr maybe redirected to a file that must get the lines.
bool stderr_is_the_journal() {
  const char* stream = std::getenv("JOURNAL_STREAM");
  struct stat st {};
  if (!stream || ::fstat(2, &st) != 0) return false;
  return std::string(stream) == std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino);
}

// One journal entry; false when journald did not take it (the line then goes to stderr).
bool to_journal(LogLevel level, std::string_view msg, const LogFields& fields) {
  std::vector<std::string> items = {"MESSAGE=" + std::string(msg),
                                    "PRIORITY=" + std::to_string(priority(level)),
                                    "SYSLOG_IDENTIFIER=portalfsd"};
  if (!fields.app.empty()) items.push_back("APP=" + std::string(fields.app));
  if (!fields.view.empty()) items.push_back("VIEW=" + std::string(fields.view));
  if (!fields.op.empty()) items.push_back("OP=" + std::string(fields.op));
  if (fields.err != 0) items.push_back("ERRNO=" + std::to_string(fields.err));
  std::vector<iovec> iov;
  for (auto& item : items) iov.push_back({item.data(), item.size()});
  return ::sd_journal_sendv(iov.data(), static_cast<int>(iov.size())) >= 0;
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

void log(LogLevel level, std::string_view msg, const LogFields& fields) {
  if (static_cast<int>(level) < g_level.load(std::memory_order_relaxed)) return;
  static const bool journal = stderr_is_the_journal();
  if (journal && to_journal(level, msg, fields)) return;
  // One fprintf per line: stdio locks the stream, so lines from threads do not interleave.
  std::fprintf(stderr, "portalfs[%s]: %.*s\n", level_name(level), static_cast<int>(msg.size()),
               msg.data());
}

void log_once(LogLevel level, std::string_view key, std::string_view msg, const LogFields& fields) {
  {
    std::lock_guard lock(g_once_mutex);
    if (!g_once_keys.emplace(key).second) return;
  }
  log(level, msg, fields);
}

}  // namespace portalfs::common
