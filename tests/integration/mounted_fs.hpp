// SPDX-License-Identifier: MIT
#pragma once

// MountedFs: the filesystem mounted for real in this process (libfuse's loop in a thread),
// over temporary directories, for tests that make real syscalls through it. Teardown
// unmounts; a test that cannot get /dev/fuse skips (or fails when PORTALFS_REQUIRE_FUSE=1).

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "fuse/filesystem.hpp"
#include "fuse/session.hpp"
#include "policy/view_spec.hpp"
#include "tests/testutil/temp_dir.hpp"

namespace portalfs::testutil {

/// Presets for the kinds of views the suites run on.
enum class ViewKind {
  data,          // a data view, identity map
  shared_map,    // a read-write shared view with a range map 0:100000:65536
  shared_squash, // a read-write shared view squashing to the share owner 2000:2000,
                 // presented as 1000:1000
  shared_ro,     // a read-only shared view
};
const char* to_string(ViewKind kind);

class MountedFs {
 public:
  /// Past `watchdog` (PORTALFS_MOUNT_WATCHDOG_SECONDS overrides it) the FUSE connection is
  /// aborted: a request the in-process daemon never answers would otherwise leave the test
  /// thread in an uninterruptible wait that not even SIGKILL ends (the daemon that should
  /// answer is the dying process itself), and the mount behind. The stuck call then fails
  /// with ENOTCONN and the test fails instead of hanging.
  explicit MountedFs(fuse::Options options = {},
                     std::chrono::seconds watchdog = std::chrono::seconds(240));
  ~MountedFs();
  MountedFs(const MountedFs&) = delete;
  MountedFs& operator=(const MountedFs&) = delete;

  /// Stops and starts the daemon as a portalfsd restart does: unmounts (the loop ends once
  /// nothing uses the mount), destroys the Filesystem, then makes a fresh one over the same
  /// storage, gives it the views last set (a view killed with set_views is one the set no
  /// longer has, as for the mount manager) and mounts it at the same mountpoint. Nothing of
  /// the old daemon is kept: each backing directory is reached again from its anchor. Returns
  /// the lines the daemon would log for views it cannot serve (listed, answering EIO).
  ///
  /// Every fd and cwd on the mount must be gone first: the unmount waits for them, and after
  /// 10 s fails the test and aborts the old connection. The mount's st_dev changes, and fs()
  /// is the new Filesystem. Throws std::runtime_error when mounting again fails (ok() is then
  /// false).
  std::vector<std::string> restart();

  /// False when /dev/fuse (or mounting) is not available; the test then skips or fails.
  [[nodiscard]] bool ok() const { return session_ != nullptr; }
  [[nodiscard]] const std::string& error() const { return error_; }

  /// Adds a view (replacing the whole set) and returns its path through the mount. Its
  /// backing directory <storage>/<app>-<name> is created first. A backing below storage() is
  /// anchored there (as portalfsd anchors views at its storage root).
  std::string add_view(const std::string& app, ViewKind kind, const std::string& name = "v",
                       const std::string& backing = "");
  /// Sets the views directly.
  void set_views(const policy::ViewSpecs& views, const policy::ViewSpecs& killed = {});
  [[nodiscard]] const policy::ViewSpecs& views() const { return views_; }
  static policy::ViewSpec preset(const std::string& app, ViewKind kind, const std::string& name,
                                 const std::string& backing);
  /// A shared view `name` of `backing` for `app` in mode `access` (ids as on disk), anchored
  /// at storage().
  [[nodiscard]] policy::ViewSpec shared_view(const std::string& app, const std::string& name,
                                             const std::string& backing, policy::Access access) const;

  [[nodiscard]] std::string storage() const { return dir_ / "storage"; }
  [[nodiscard]] std::string mountpoint() const { return dir_ / "mnt"; }
  /// <mountpoint>/apps/<app>/<kind>/<name>
  [[nodiscard]] std::string path(const policy::ViewSpec& view) const;
  fuse::Filesystem& fs() { return *fs_; }

 private:
  /// Mounts fs_ and starts the loop, the crash handler's slot and the watchdog; sets error_
  /// and leaves session_ null when mounting fails.
  void mount();
  /// Unmounts and waits for the loop to end (see restart()); releases the slot and stops
  /// the watchdog. Nothing to do when not mounted.
  void unmount();

  TempDir dir_;
  fuse::Options options_;
  std::unique_ptr<fuse::Filesystem> fs_;
  std::unique_ptr<fuse::Session> session_;
  std::thread loop_;
  policy::ViewSpecs views_;
  std::string error_;
  int slot_ = -1;  // in the crash handler's table of mountpoints to detach
  std::atomic<bool> loop_done_{false};
  int connection_ = -1;  // the FUSE connection's number (for aborting a stuck teardown)
  // The watchdog's deadline counts from the construction, restarts included; one thread per
  // mount (joined before the next mount changes connection_).
  std::chrono::seconds watchdog_seconds_{0};
  std::chrono::steady_clock::time_point watchdog_deadline_;
  std::thread watchdog_;
  std::mutex watchdog_mutex_;
  std::condition_variable watchdog_cv_;
  bool watchdog_stop_ = false;
};

/// Runs `fn` in a forked child as uid/gid (all ids set, no supplementary groups) and returns
/// its exit status (or -1). The child must only make syscalls (no gtest asserts).
int run_as(uid_t uid, gid_t gid, const std::function<int()>& fn);

}  // namespace portalfs::testutil

/// In a test body: skip or fail (CI) when the mount is not available.
#define PORTALFS_REQUIRE_MOUNT(m) \
  do {                            \
    if (!(m).ok()) PORTALFS_SKIP_OR_FAIL("cannot mount FUSE: " + (m).error()); \
  } while (0)
