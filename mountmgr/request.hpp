// SPDX-License-Identifier: MIT
#pragma once

// One control request, checked before anything is looked at: {"verb", "format"?, "args"?}
// (see mountmgr/control_protocol.hpp). Args are read strictly: a missing, unknown or
// wrong-typed argument is a RequestError with code 2 and a one-line message naming it.

#include <initializer_list>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/escape.hpp"
#include "mountmgr/json_reader.hpp"

namespace portalfs::mountmgr {

inline constexpr int kCodeUsage = 2;    // bad input; nothing changed
inline constexpr int kCodeRuntime = 1;  // the request was good, carrying it out failed

/// A refused or failed request: what handle() turns into {"ok": false, "code", "error"}.
/// The message is one line whatever it quotes: control characters are escaped ("\n", "\xNN").
class RequestError : public std::runtime_error {
 public:
  RequestError(int code, const std::string& message) : std::runtime_error(common::escape_for_message(message)), code_(code) {}
  [[nodiscard]] int code() const { return code_; }

 private:
  int code_;
};

/// Shorthands.
[[noreturn]] void refuse(const std::string& message);  // code 2
[[noreturn]] void failed(const std::string& message);  // code 1

struct Request {
  std::string verb;
  bool json = false;  // "format": "json"
  nlohmann::json args = nlohmann::json::object();
};

/// Throws RequestError(2) for a malformed request.
Request parse_request(const nlohmann::json& request);

/// The args of one verb. The constructor refuses keys outside `allowed`.
class Args {
 public:
  Args(const Request& request, std::initializer_list<std::string_view> allowed);

  [[nodiscard]] std::string str(std::string_view key) const;
  [[nodiscard]] std::optional<std::string> opt_str(std::string_view key) const;
  [[nodiscard]] bool flag(std::string_view key) const;  // optional, default false
  [[nodiscard]] int64_t integer(std::string_view key, int64_t min, int64_t max) const;
  [[nodiscard]] std::optional<std::vector<std::string>> opt_str_list(std::string_view key) const;

  /// A code-2 error about one argument: "VERB: argument "KEY": PROBLEM".
  [[noreturn]] void bad(std::string_view key, const std::string& problem) const;

 private:
  template <typename F>
  auto read(F&& f) const -> decltype(f());

  const Request& request_;
  JsonReader reader_;
};

}  // namespace portalfs::mountmgr
