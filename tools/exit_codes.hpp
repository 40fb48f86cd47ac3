// SPDX-License-Identifier: MIT
#pragma once

// The exit codes of portalfsd and portalctl. Scripts (and Dokku-style wrappers) branch on these,
// so the values are part of the interface and never change.

namespace portalfs::tools {

enum class ExitCode : int {
  /// The command did what was asked (including --help and --version).
  ok = 0,
  /// A runtime failure: the daemon is unreachable, a syscall failed, the state could not be
  /// loaded, or the daemon answered a request with code 1. Retrying later may succeed.
  runtime = 1,
  /// Bad input: unknown or missing command line arguments, an invalid manifest, an unreadable
  /// input file, or a request the daemon refused with code 2. Nothing was changed; retrying the
  /// same command fails the same way.
  usage = 2,
};

/// The value to return from main().
constexpr int to_int(ExitCode code) noexcept {
  return static_cast<int>(code);
}

}  // namespace portalfs::tools
