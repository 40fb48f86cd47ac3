// SPDX-License-Identifier: MIT
#pragma once

// portalctl's offline commands for Freeshard's compose templates (policy/compose.hpp):
//   validate --compose TEMPLATE...   one line per volume of every service: what portalfs serves
//                                    it as, or "not mediated by portalfs"
//   render APP TEMPLATE [-o FILE]    the template with the {{ fs.* }} sources replaced by views
// A bad template is one line on stderr (FILE:LINE:COL: ... or naming service and volume),
// exit 2, and nothing written.

#include "tools/exit_codes.hpp"
#include "tools/options.hpp"

namespace portalfs::tools {

ExitCode run_validate_compose(const CtlCommand& cmd);
ExitCode run_render(const CtlCommand& cmd);
/// app install/upgrade --compose: adds to cmd.args what the daemon needs besides the template
/// (read into args.manifest by the caller): "name" (--name, else app_meta.json's, from --meta
/// or beside the template, else the folder's name), "version" (app_meta.json's), and
/// "installation_dir" (the template's folder); drops "meta". ExitCode::usage after printing
/// one line when app_meta.json is unreadable or invalid.
ExitCode prepare_compose_request(CtlCommand& cmd);

}  // namespace portalfs::tools
