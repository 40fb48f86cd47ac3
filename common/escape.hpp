// SPDX-License-Identifier: MIT
#pragma once

// Quoting untrusted text (names, paths, parser output) in a message that must stay one line.
// Shared by policy (manifest errors) and mountmgr (request errors, state errors, portalctl).

#include <cstddef>
#include <string>
#include <string_view>

namespace portalfs::common {

enum class Escape {
  /// Control characters (C0 and DEL) written out: "\n", "\t", "\r", else "\xNN". Other bytes
  /// are kept as they are.
  controls,
  /// Control characters and every byte that is not part of valid UTF-8 (RFC 3629) written as
  /// "\xNN": the result is one line of valid UTF-8.
  controls_and_invalid_utf8,
};

/// The text with what `how` names escaped.
std::string escape_for_message(std::string_view text, Escape how = Escape::controls);

/// Whether `c` continues a UTF-8 sequence (10xxxxxx).
inline bool is_utf8_continuation(char c) { return (static_cast<unsigned char>(c) & 0xC0) == 0x80; }

/// `text` cut to at most `max` bytes plus "...", never inside a UTF-8 sequence; unchanged when
/// it is no longer than `max`.
std::string truncated_utf8(std::string text, std::size_t max);

}  // namespace portalfs::common
