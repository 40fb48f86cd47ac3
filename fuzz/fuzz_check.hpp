// SPDX-License-Identifier: MIT
#pragma once

// What the fuzz targets share: the check that turns a broken promise into a crash libFuzzer
// keeps, and the list of findings reported but not fixed yet.

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

/// Every error message of the tools is one line.
inline bool one_line(std::string_view text) { return text.find_first_of("\r\n") == std::string_view::npos; }

}  // namespace portalfs::fuzz
