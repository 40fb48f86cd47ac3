// SPDX-License-Identifier: MIT
#pragma once

// HostWatch: changes made on the host, directly in the backing directories (a file manager, a
// sync client, an app's passthrough writes, which the kernel makes without asking portalfs),
// read from fanotify and handed to the filesystem, which invalidates what the views cached and
// raises the same events in them (events.cpp).
//
// The interface: fanotify with FAN_REPORT_DFID_NAME on a file-system mark (FAN_MARK_FILESYSTEM)
// of each file system that holds a served directory. Each event names the directory (a file
// handle) and the entry, so no watch per directory is needed: inotify would need one per
// backing directory, and a share of a million directories would exceed any watch limit. The
// limits: the mark covers the whole file system, so changes outside the storage root are read
// and dropped (one open_by_handle_at and one fstat each); portalfsd's own changes (its pid) are
// skipped; the queue holds 16384 events, and an overflow (FAN_Q_OVERFLOW) ends in invalidating
// everything the kernel cached, never in a stale view.

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "common/unique_fd.hpp"

struct fanotify_event_metadata;  // <sys/fanotify.h>
struct fanotify_event_info_fid;

namespace portalfs::fuse {

struct HostChange {
  enum Kind : uint8_t { created, deleted, moved, modified, closed, attrib, overflow };
  Kind kind = overflow;
  bool is_dir = false;  // the entry is a directory
  pid_t pid = 0;  // the thread group that made it (0: unknown)
  // The directory and the entry's name (moved: where it was, then where it is now).
  dev_t dev = 0;
  ino_t ino = 0;
  std::string name;
  common::UniqueFd dir;  // O_PATH fd of the directory
  dev_t to_dev = 0;
  ino_t to_ino = 0;
  std::string to_name;
  common::UniqueFd to_dir;
};

class HostWatch {
 public:
  /// Where a file handle of file system `dev` can be opened (a directory fd on it, not O_PATH),
  /// or null when nothing served is on it any more.
  using MountOf = std::function<std::shared_ptr<const common::UniqueFd>(dev_t)>;
  using Sink = std::function<void(HostChange&)>;

  HostWatch() = default;
  ~HostWatch() { stop(); }
  HostWatch(const HostWatch&) = delete;
  HostWatch& operator=(const HostWatch&) = delete;

  /// Watches the file system of `dir` (a directory fd); once per file system. "" or why not.
  std::string watch(int dir);
  /// Starts reading (a thread; after portalfsd's fork) and reporting to `sink`.
  void start(MountOf mount_of, Sink sink);
  void stop();

 private:
  std::string init_locked();  // the fanotify group, once: "" or why not
  static constexpr std::chrono::milliseconds kCoalesce{5};  // run(): events gathered per read
  void run();
  void report(const ::fanotify_event_metadata* m);
  /// The directory a DFID_NAME record names: its fd, (dev, ino) and the name.
  bool resolve(const ::fanotify_event_info_fid* fid, common::UniqueFd& dir, dev_t& dev,
               ino_t& ino, std::string& name);

  std::mutex mutex_;  // guards fsids_
  common::UniqueFd fan_;
  /// Marks the file system of `dir` (fsid `key`), from a directory above it if it is a btrfs
  /// subvolume; the fsid marked, or nullopt (errno says why).
  std::optional<std::pair<int, int>> mark_locked(int dir, std::pair<int, int> key);
  /// The file systems marked: fsid -> the st_dev of the view roots on it (a btrfs file system
  /// has one per subvolume; a handle opens from any of them).
  std::map<std::pair<int, int>, std::vector<dev_t>> fsids_;
  std::map<std::pair<int, int>, std::pair<int, int>> aliases_;  // a subvolume's fsid -> the one marked
  common::UniqueFd wake_;  // an eventfd: stop()
  MountOf mount_of_;
  Sink sink_;
  pid_t self_ = 0;
  std::thread thread_;
};

}  // namespace portalfs::fuse
