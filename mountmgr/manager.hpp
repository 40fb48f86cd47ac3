// SPDX-License-Identifier: MIT
#pragma once

// The mount manager: owns the state (apps, shares, grants, hand-made storage mounts,
// attachments), carries out every control request, and tells the filesystem which views to
// serve. It knows nothing of FUSE: views go out as policy::ViewSpecs through a callback.
//
// The control protocol (JSON lines over the daemon's Unix socket; see docs in
// mountmgr/control_protocol.hpp) maps one request object to one response object:
//   request:  {"verb": "app.install", "format": "text"|"json", "args": {...}}
//   response: {"ok": true,  "output": "<exactly what portalctl prints>"}
//             {"ok": false, "code": 2|1, "error": "<one line>"}
//             an ok response may add "warning": "<one line>" (a change in force but not saved;
//             for a JSON output that is not an object, the running containers the change did
//             not reach, which a text output lists as lines and a JSON object as
//             "attachment_errors")
// code 2 = bad input (nothing changed), code 1 = runtime failure.

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "mountmgr/attach.hpp"
#include "mountmgr/quota.hpp"
#include "policy/view_spec.hpp"

namespace portalfs::common {
class AuditLog;
}

namespace portalfs::mountmgr {

/// How the manager reaches into containers. An empty member means the real function from
/// mountmgr/attach.hpp; tests put fakes here to check the attachment bookkeeping. attach and
/// detach throw std::runtime_error (one line) on failure.
struct AttachOps {
  std::function<void(const ProcessIdentity& process, const std::vector<Bind>& binds)> attach;  // attach_binds
  std::function<void(const ProcessIdentity& process, const std::vector<std::string>& targets)>
      detach;                                                     // detach_binds
  std::function<std::optional<ProcessIdentity>(int pid)> identify;  // identify_process
};

/// What a change did to the served views: the apps whose views it replaced, with all their views
/// now (an app of `apps` without a view in `views` has none any more). Every other app's views
/// are as they were.
struct ViewsDelta {
  std::set<std::string> apps;
  policy::ViewSpecs views;
  policy::ViewSpecs killed;  // views revoked with --force
  bool all = false;          // `views` is every view served: it replaces them all
};

/// Called (outside the manager's lock) after every change of the served views, with only what
/// changed; calls arrive in commit order (as ViewsChanged, below).
using ViewsUpdated = std::function<void(const ViewsDelta& delta)>;

struct ManagerConfig {
  std::string storage_root = "/var/lib/portalfs/storage";
  std::string state_dir = "/var/lib/portalfs";
  std::string mountpoint = "/run/portalfs/fs";
  /// Start from state.json.bak when state.json is corrupt (--recover-from-backup).
  bool recover_from_backup = false;
  /// The folder below storage_root that holds one folder per app: "apps", or "app_data" for a
  /// Freeshard tree served in place (portalfsd --layout freeshard). Shares are in "shared" in
  /// both. State and removal records always say "apps/<app>"; only the disk path differs.
  std::string apps_dir = "apps";
  /// How often the shares' trashes are rid of their expired entries (and once at start).
  std::chrono::seconds trash_purge_interval{3600};
  /// attach, detach, heal and the live following of grants go through these (default:
  /// mountmgr/attach.hpp).
  AttachOps attach_ops = {};
  /// Project quotas go through these (default: mountmgr/quota.hpp).
  QuotaOps quota_ops = {};
  /// Share apps, shares and grants with every other node over this storage root
  /// (portalfsd --shared-state on; mountmgr/shared_state.hpp).
  bool shared_state = false;
  /// When set, called instead of ViewsChanged, with only the views of the apps a change
  /// touched: a change costs the filesystem in proportion to it, not to every view served.
  ViewsUpdated on_views_updated = {};
};

/// Called (outside the manager's lock) after every change of the served views. `killed` lists
/// views revoked with --force, whose open handles must start failing. Calls arrive in commit
/// order; the callback may call views() but not handle() (it would wait for itself).
using ViewsChanged =
    std::function<void(const policy::ViewSpecs& views, const policy::ViewSpecs& killed)>;

/// Extra facts for `status` that only the daemon knows (FUSE features, ...), as JSON.
using StatusProvider = std::function<nlohmann::json()>;

/// Thrown when the state cannot be loaded (by the constructor) or saved; what() is the one-line
/// message that names the file and the problem (and, when loading, what to do).
class StateError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class Manager {
 public:
  /// Loads (or creates) the state under config.state_dir; throws StateError.
  Manager(ManagerConfig config, ViewsChanged on_views_changed, StatusProvider status = {});
  ~Manager();
  Manager(const Manager&) = delete;
  Manager& operator=(const Manager&) = delete;

  /// The views to serve now.
  [[nodiscard]] policy::ViewSpecs views() const;

  /// Carries out one request (see above). Thread-safe; never throws.
  nlohmann::json handle(const nlohmann::json& request);

  /// Starts the background work (emptying the trash of purged and pruned trees, saving a
  /// state that could not be saved): call once the process will not fork any more. Requests
  /// that need it start it too.
  void start();

 private:
  /// The shared-state watcher's loop (Manager::start; mountmgr/shared_state.hpp).
  void watch_shared();

 public:

  /// Waits until the trash is empty (or what is left can't be deleted) and the state is
  /// saved; false after `timeout`. For tests and for a clean stop.
  bool wait_idle(std::chrono::milliseconds timeout);

  /// After the filesystem is mounted (at start, or again after a crash): re-attaches every
  /// recorded attachment whose process is still the one recorded (same start time and mount
  /// namespace) and forgets the others. Returns how many were re-attached.
  int heal_attachments();

  /// Records app, grant and share changes to `log` from now on (common/audit.hpp; nullptr:
  /// none). Call before requests arrive; the log must outlive the manager's requests.
  void set_audit(common::AuditLog* log);

  /// Defined in manager_impl.hpp; named outside only by the verb files (mountmgr/verbs_*.cpp).
  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace portalfs::mountmgr
