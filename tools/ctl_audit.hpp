// SPDX-License-Identifier: MIT
#pragma once

// portalctl audit [APP] [--since T] [--follow] [--state-dir DIR]: prints the audit trail that
// portalfsd writes to <state-dir>/audit/ (common/audit.hpp), read from the files directly
// (portalctl runs as root on the daemon's host), oldest first: one app's files in rotation
// order, or every file merged by time. --follow then prints new lines as they are written,
// reopening a file that was rotated (after reading what was left in the old one).

#include "tools/exit_codes.hpp"
#include "tools/options.hpp"

namespace portalfs::tools {

ExitCode run_audit(const CtlCommand& cmd);

}  // namespace portalfs::tools
