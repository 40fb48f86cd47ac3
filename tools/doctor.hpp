// SPDX-License-Identifier: MIT
#pragma once

// portalctl doctor: checks this machine for what portalfsd needs, one line per check (PASS,
// WARN or FAIL, and for the last two the command that fixes it). Runs here, not in the daemon:
// it must work while the daemon can't start.

#include "tools/exit_codes.hpp"
#include "tools/options.hpp"

namespace portalfs::tools {

/// Runs every check for the daemon configured by cmd.args["config"] (else portalfsd's default
/// config file, when there is one) and prints them in cmd.format. ExitCode::runtime when a
/// check FAILs.
ExitCode run_doctor(const CtlCommand& cmd);

}  // namespace portalfs::tools
