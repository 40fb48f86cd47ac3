// SPDX-License-Identifier: MIT
#pragma once

// What the fuzz targets share: the check that turns a broken promise into a crash libFuzzer
// keeps, and the list of findings reported but not fixed yet.

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <type_traits>

#include <nlohmann/json.hpp>

namespace portalfs::fuzz {

/// A broken promise of the code under test: say which, then abort so libFuzzer keeps the input.
inline void require(bool ok, const char* what, std::string_view detail = {}) {
  if (ok) return;
  std::fprintf(stderr, "fuzz: %s: %.*s\n", what, static_cast<int>(detail.size()), detail.data());
  std::abort();
}

/// The same, with the detail made only on failure (a dump of a whole response costs).
template <typename MakeDetail>
  requires std::is_invocable_r_v<std::string, MakeDetail>
void require(bool ok, const char* what, MakeDetail&& detail) {
  if (!ok) require(false, what, std::string_view(detail()));
}

/// A value as one line of JSON, whatever bytes its strings hold.
inline std::string show(const nlohmann::json& value) {
  return value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

/// A finding reported but not fixed yet is checked like any other, unless its name is listed in
/// $PORTALFS_FUZZ_KNOWN (comma-separated): then a long run goes on to find others. Each has an
/// input in fuzz/regressions/, which scripts/fuzz replays without the list.
inline bool known(std::string_view name) {
  const char* list = std::getenv("PORTALFS_FUZZ_KNOWN");
  if (list == nullptr) return false;
  const std::string padded = "," + std::string(list) + ",";
  return padded.find("," + std::string(name) + ",") != std::string::npos;
}

/// Every error message of the tools is one line: no control character at all (a tab or an
/// escape sequence is no better on a terminal than a newline).
inline bool one_line(std::string_view text) {
  for (char c : text) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) return false;
  }
  return true;
}

/// Whether `text` is valid UTF-8 (RFC 3629: no overlong forms, surrogates or code points above
/// U+10FFFF).
inline bool valid_utf8(std::string_view text) {
  for (std::size_t i = 0; i < text.size();) {
    const auto byte = [&](std::size_t k) { return static_cast<unsigned char>(text[k]); };
    const unsigned char lead = byte(i);
    const std::size_t n = lead < 0x80 ? 1 : (lead >> 5) == 0x6 ? 2 : (lead >> 4) == 0xE ? 3 : (lead >> 3) == 0x1E ? 4 : 0;
    if (n == 0 || i + n > text.size()) return false;
    uint32_t cp = n == 1 ? lead : lead & (0x7Fu >> n);
    for (std::size_t k = 1; k < n; ++k) {
      if ((byte(i + k) & 0xC0) != 0x80) return false;
      cp = cp << 6 | (byte(i + k) & 0x3Fu);
    }
    const uint32_t min = n == 1 ? 0 : n == 2 ? 0x80 : n == 3 ? 0x800 : 0x10000;
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += n;
  }
  return true;
}

}  // namespace portalfs::fuzz
