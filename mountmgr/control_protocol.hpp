// SPDX-License-Identifier: MIT
#pragma once

// The control protocol between portalctl and portalfsd: one JSON object per line each way over
// the daemon's Unix socket (SOCK_STREAM). The daemon checks the peer's credentials
// (SO_PEERCRED: uid 0, or a member of --admin-group) before reading a request.
//
// Request:  {"verb": V, "format": "text"|"json", "args": {...}}
// Response: {"ok": true, "output": "<what portalctl prints, newline-terminated or empty>"}
//           {"ok": false, "code": 2|1, "error": "<one line, no trailing newline>"}
//
// The verbs and their args are listed in the verb tables, next to their handlers:
// app_verbs() in mountmgr/verbs_apps.cpp, share_verbs() in verbs_shares.cpp, storage_verbs() in
// verbs_storage.cpp, and status in manager.cpp.

#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace portalfs::mountmgr {

/// The largest request line the daemon reads (a manifest is a few KiB; 1 MiB is plenty).
inline constexpr std::size_t kMaxRequestBytes = 1 << 20;

/// A response for a refused request.
nlohmann::json error_response(int code, std::string_view message);
/// A response for a carried-out request.
nlohmann::json ok_response(std::string output);

}  // namespace portalfs::mountmgr
