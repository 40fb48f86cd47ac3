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
// Verbs and their args (every field not marked optional is required):
//   app.install   {manifest: "<file contents>", source: "<file name for messages>",
//                  name?: "<id>", uid_maps?: ["C:H:N",...], gid_maps?: ["C:H:N",...]}
//   app.upgrade   {manifest, source, prune?: bool,
//                  name?, uid_maps?, gid_maps?}  (as for app.install; maps given replace the
//                  app's, maps left out keep them)
//   app.remove    {app, purge?: bool}
//   app.list      {}
//   app.show      {app}
//   share.create  {name, owner?: "UID:GID"}
//   share.list    {}
//   grant         {app, share, access: "read"|"read-write", path: "/in/container"}
//   revoke        {app, share, force?: bool}
//   mounts        {app, style: "docker"|"oci"|"json"}
//   attach        {app, pid: int}
//   detach        {app, pid: int}
//   storage.list            {app}
//   storage.mount           {app, spec: "HOST:CTR[:ro]"}
//   storage.unmount         {app, spec: "HOST:CTR"}
//   storage.report          {app?, only?: "deploy"|"run"|"build"}
//   storage.ensure-directory {name, chown?: "herokuish"|"heroku"|"packeto"|"false"}
//   status        {}

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
