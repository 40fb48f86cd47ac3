// SPDX-License-Identifier: MIT
#pragma once

// portalctl's end of the control protocol (mountmgr/control_protocol.hpp): connect to the
// daemon's socket, send one request line, read one response line.

#include <chrono>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>

#include "common/escape.hpp"

namespace portalfs::mountmgr {

/// The daemon could not be reached or did not answer properly. what() is one line that names
/// the socket and, where it helps, what to do:
///   "cannot reach portalfsd at /run/portalfs/portalfs.sock: No such file or directory (is the
///    daemon running? start it with: portalfsd)"
/// Control characters in it (from a path, or quoted by the JSON parser from a malformed
/// response) are escaped ("\n", "\x7f").
class ControlError : public std::runtime_error {
 public:
  explicit ControlError(const std::string& message) : std::runtime_error(common::escape_for_message(message)) {}
};

class ControlClient {
 public:
  /// The largest response accepted (a status of thousands of apps is far below this).
  static constexpr std::size_t kMaxResponseBytes = 64u << 20;

  /// `timeout`: how long the daemon may take to answer (attaching into a container, installing
  /// an app with many directories, ... take a while).
  explicit ControlClient(std::chrono::milliseconds timeout = std::chrono::seconds(120))
      : timeout_(timeout) {}

  /// Sends `request` and returns the daemon's response object, which has "ok" (bool) and
  /// either "output" (string) or "code" (int) and "error" (string). Throws ControlError.
  [[nodiscard]] nlohmann::json call(const std::string& socket_path,
                                    const nlohmann::json& request) const;

 private:
  std::chrono::milliseconds timeout_;
};

}  // namespace portalfs::mountmgr
