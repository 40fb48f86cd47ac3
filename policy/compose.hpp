// SPDX-License-Identifier: MIT
#pragma once

// Freeshard's current app format: a docker-compose.yml.template whose volume sources use the
// platform's `{{ fs.* }}` variables (tests/fixtures/compose/README.md has the table).
//
// parse_compose() reads the template with yaml-cpp and finds, in every service, every volume
// (short syntax "SRC:DST[:MODE]", quoted or not, and long syntax {type, source, target,
// read_only}). A volume whose source starts with `{{ fs.VAR }}` (any whitespace inside the
// braces) is mediated by portalfs; any other source is reported as not mediated and left alone.
//
// Jinja expressions elsewhere (`{{ portal.domain }}`) would not always be valid YAML where they
// stand (an unquoted `- {{ fs.app_data }}/x:/x` is a flow mapping to YAML), so before parsing
// every `{{ … }}` on one line is replaced by a run of 'Q' of the same length. Offsets, lines and
// columns are therefore those of the original text, and a volume's source is read back from the
// original bytes at the position yaml-cpp reports, which is also what render_compose() replaces.
//
// No I/O: the caller reads the file.

#include <cstddef>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "policy/grant.hpp"
#include "policy/manifest.hpp"

namespace portalfs::policy {

/// The platform's filesystem variables.
enum class FsVar { app_data, shared, all_app_data, installation_dir };
const char* to_string(FsVar var);  // "fs.app_data", ...

/// One volume of one service.
struct ComposeVolume {
  std::size_t index = 0;   // position in the service's `volumes` list (from 0)
  std::string text;        // the volume as written (short syntax) or "source -> target" (long)
  bool mediated = false;   // the source is `{{ fs.* }}[/SUB]`
  FsVar var = FsVar::app_data;  // mediated only
  /// mediated only: the sub-path after the variable, without leading or trailing '/', ""
  /// when the variable stands alone ("upload", "var/www/baikal/config").
  std::string sub;
  /// not mediated: the source as written ("/var/run/docker.sock", a named volume, or "" for
  /// an anonymous volume).
  std::string host_source;
  std::string target;      // the container path, normalised
  Access access = Access::read_write;
  /// mediated only: the byte range of the variable and its sub-path in the template, the part
  /// render_compose() replaces.
  std::size_t source_begin = 0, source_end = 0;
  std::size_t line = 0, column = 0;  // from 1, of the volume entry
};

struct ComposeService {
  std::string name;
  /// The ids the service runs as: `user:` when numeric ("1000" or "1000:1000"), else PUID and
  /// PGID from `environment` when numeric; nullopt when neither says (the image's own user).
  std::optional<Owner> user;
  std::vector<ComposeVolume> volumes;
};

struct ComposeApp {
  std::vector<ComposeService> services;  // in document order
};

/// Parses and checks a template. Throws ManifestError with one line:
///   "SOURCE:LINE:COL: <yaml-cpp's message>"                     for text that is not YAML
///   "SOURCE:LINE:COL: service S, volume N (\"TEXT\"): PROBLEM"   for a bad volume (an unknown
///       fs. variable, "." or ".." in a sub-path, an fs. variable not at the start, ...)
///   "SOURCE: PROBLEM"                                            for a bad document shape
ComposeApp parse_compose(std::string_view text, std::string_view source);

/// The template with the [source_begin, source_end) range of every mediated volume replaced by
/// `view_path(service, volume)`; every other byte unchanged.
std::string render_compose(std::string_view text, const ComposeApp& app,
                           const std::function<std::string(const ComposeService&, const ComposeVolume&)>& view_path);

// ---- What portalfs serves for a template ---------------------------------------------------
//
// Each service is served as its own portalfs app, `<app>--<service>` (service_app_id), so that
// every service has its own views, owners and `mounts`; their data directories are the compose
// app's, below <storage>/apps/<app>/. A volume becomes:
//   {{ fs.app_data }}/SUB              data dir SUB (nested SUBs nest), owner = the service's user
//   {{ fs.shared }}/NAME               share NAME, owner = the service's user
//   {{ fs.shared }}/NAME/DEEPER        <storage>/shared/NAME/DEEPER as a host view
//   {{ fs.shared }}                    <storage>/shared as a host view: every share, also later ones
//   {{ fs.installation_dir }}[/X]      the installed file or folder X, read-only, as a host view
//   {{ fs.all_app_data }}[/X]          <storage>/apps[/X] as a host view: refused unless allowed
//   {{ fs.app_data }}                  <storage>/apps/<app> as a host view: all the app's data
// The operator's share_access overrides the template's access for a share ("immich may only
// read pictures"), "*" for every share (also {{ fs.shared }} alone).

struct ComposePlanOptions {
  std::string app;               // the app id (checked with check_app_name)
  std::string storage_root;      // for fs.all_app_data and fs.shared views
  std::string apps_dir = "apps";  // the folder of apps' data below it ("app_data": Freeshard)
  std::string installation_dir;  // absolute: the folder the template was installed from
  bool allow_all_app_data = false;
  /// share name (or "*") -> the access the operator allows, whatever the template says.
  std::map<std::string, Access> share_access;
};

/// "NAME=read" / "NAME=read-write" / "*=read" -> share_access; nullopt, or what was expected.
std::optional<std::string> parse_share_access(std::string_view text, std::map<std::string, Access>& out);

/// What one mediated volume is served as.
struct PlannedVolume {
  const ComposeVolume* volume = nullptr;
  Grant grant;
  std::string deeper;  // fs.shared/NAME/DEEPER: DEEPER (for messages; the grant is a host view)
};

/// Points into the ComposeApp it was planned from, which must outlive it.
struct ServicePlan {
  const ComposeService* service = nullptr;
  std::string app_id;  // service_app_id()
  std::vector<PlannedVolume> volumes;     // mediated volumes, in the service's order
  std::vector<const ComposeVolume*> not_mediated;
};

/// `<app>--<service>`, the service name turned into an id as app_id_from_name() does;
/// throws ManifestError when that is not a valid app id (too long, nothing left).
std::string service_app_id(std::string_view app, std::string_view service, std::string_view source);

/// The plan for every service. Throws ManifestError ("SOURCE: service S, volume N (...): ...")
/// for fs.all_app_data without allow_all_app_data, a bad app id, or two
/// volumes of one service that would be one view.
std::vector<ServicePlan> plan_compose(const ComposeApp& app, const ComposePlanOptions& options,
                                      std::string_view source);

}  // namespace portalfs::policy
