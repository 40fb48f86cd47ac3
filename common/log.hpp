// SPDX-License-Identifier: MIT
#pragma once

// One leveled logger for the whole project: stderr, one line per message, thread-safe.

#include <string_view>

namespace portalfs::common {

enum class LogLevel { debug = 0, info = 1, warn = 2, error = 3 };

/// Sets the global threshold (default: info). Thread-safe.
void set_log_level(LogLevel level);
LogLevel log_level();
/// Parses "debug|info|warn|error"; returns false on anything else.
bool parse_log_level(std::string_view text, LogLevel& out);

/// Writes one line "portalfs[level]: msg" to stderr when level passes the threshold.
void log(LogLevel level, std::string_view msg);

/// Like log(), but only the first time `key` is seen in this process (for repeated refusals).
void log_once(LogLevel level, std::string_view key, std::string_view msg);

}  // namespace portalfs::common
