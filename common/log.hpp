// SPDX-License-Identifier: MIT
#pragma once

// One leveled logger for the whole project, thread-safe. Lines go to stderr ("portalfs[level]:
// msg"), or, when systemd made the journal our stderr (JOURNAL_STREAM names it), to the journal
// as entries with a priority and the fields APP, VIEW, OP and ERRNO of what they are about.

#include <string_view>

namespace portalfs::common {

enum class LogLevel { debug = 0, info = 1, warn = 2, error = 3 };

/// What a message is about, for the journal (`journalctl -u portalfsd APP=notes`). Empty
/// strings and err 0 are left out.
struct LogFields {
  std::string_view app;
  std::string_view view;
  std::string_view op;
  int err = 0;
};

/// Sets the global threshold (default: info). Thread-safe.
void set_log_level(LogLevel level);
LogLevel log_level();
/// Parses "debug|info|warn|error"; returns false on anything else.
bool parse_log_level(std::string_view text, LogLevel& out);

/// Writes one message when level passes the threshold: to the journal with `fields`, or as one
/// line "portalfs[level]: msg" to stderr.
void log(LogLevel level, std::string_view msg, const LogFields& fields = {});

/// Like log(), but only the first time `key` is seen in this process (for repeated refusals).
void log_once(LogLevel level, std::string_view key, std::string_view msg, const LogFields& fields = {});

}  // namespace portalfs::common
