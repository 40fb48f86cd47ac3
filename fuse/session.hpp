// SPDX-License-Identifier: MIT
#pragma once

// A mounted FUSE session around a Filesystem: mount, serve on libfuse's multi-threaded
// loop, unmount. Used by portalfsd and by the in-process test fixture.

#include <string>

#include "common/unique_fd.hpp"
#include "fuse/filesystem.hpp"

namespace portalfs::fuse {

struct SessionOptions {
  std::string mountpoint;
  unsigned max_threads = 0;  // 0: libfuse's default
  bool debug = false;
};

class Session {
 public:
  /// Mounts `fs` at options.mountpoint with allow_other (as root: privileges.hpp),
  /// default_permissions, nosuid, nodev (fsname "portalfs"); not root, through fusermount3. Throws std::runtime_error with a one-line reason.
  Session(Filesystem& fs, SessionOptions options);
  ~Session();  // unmounts
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  /// Serves until stop() or a stop signal (install_signal_handlers()); returns 0 or the
  /// loop's error.
  int run();
  /// Asks run() to return: safe from any thread.
  void stop();
  /// SIGTERM/SIGINT/SIGHUP/SIGQUIT end run() (for the daemon): a thread of run()'s takes
  /// them, sets libfuse's exit flag and wakes the loop's thread, which then ends the workers;
  /// that is the one way to end a loop whose mount a container still holds (a bind mount
  /// keeps the connection alive after the lazy unmount stop() makes). They end the workers
  /// before the notifier; ~Session copes. Call it on the thread that calls run(), before
  /// starting any other thread: it blocks those signals there, so every thread started later
  /// blocks them too. It also ignores SIGPIPE and takes SIGUSR2 (the loop's wake-up).
  void install_signal_handlers();

 private:
  Filesystem& fs_;
  SessionOptions options_;
  fuse_session* se_ = nullptr;
  bool mounted_ = false;
  bool signals_ = false;
  std::string connection_;  // the FUSE connection's number, for abort_connection()

  /// Ends the connection: the kernel fails every pending request.
  void abort_connection();
  /// The connection's fusectl abort file, opened for writing (none: not root, or no fusectl).
  common::UniqueFd open_abort_file() const;
};

/// What is at a mountpoint before mounting.
enum class MountpointState { free, stale_portalfs, live_portalfs, other_mount, missing };
MountpointState probe_mountpoint(const std::string& path);

/// Clears a dead portalfs mount (a crashed daemon) with a lazy unmount. Returns "" or an error.
std::string clear_stale_mount(const std::string& path);

}  // namespace portalfs::fuse
