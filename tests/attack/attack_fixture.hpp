// SPDX-License-Identifier: MIT
#pragma once

// The attack suite's world (issue #5): app A has a read-write data view, a read-write share
// S1 (squashed: stored as 2000:2000, shown as 1000:1000), a read-only share S2 and a range-
// mapped share S3; app B has its own data view holding a secret; the host has a secret outside
// the storage root. Each test is one attack made from inside A's views, and must be refused
// (or be harmless, said so in a comment) with nothing changed on disk. TearDown compares B's
// data, S2 and the host secret with a snapshot taken in SetUp, so a refusal with a side effect
// fails whatever the test itself checked.
//
// Backing directories sit side by side in <storage>: <storage>/a-v is A's data, <storage>/b-v
// B's. So the symlink target "../b-v/secret" in A's view root names B's secret *on the backing
// side*, and nothing through the mount (apps/a/data/b-v does not exist): a daemon that ever
// followed a symlink on the backing side would be caught by it, while the kernel, which
// resolves symlinks for the caller, gets ENOENT.

#include <gtest/gtest.h>
#include <sys/types.h>

#include <functional>
#include <set>
#include <string>
#include <vector>

#include "tests/integration/fs_helpers.hpp"
#include "tests/integration/mounted_fs.hpp"

namespace portalfs::testutil {

/// The unprivileged container user of the attacks.
inline constexpr uid_t kAppUid = 1000;
inline constexpr gid_t kAppGid = 1000;

inline constexpr const char kBSecret[] = "B's secret\n";
inline constexpr const char kHostSecret[] = "root:$6$host-secret:19000:0:99999:7:::\n";
inline constexpr const char kReadOnlyBytes[] = "read-only share bytes\n";

/// Everything a side effect could change in a tree: per entry its type, mode, owner, size,
/// link count, inode, mtime, ctime, bytes (regular files) or target (symlinks), and every
/// xattr (all namespaces). Empty string for a missing tree.
std::string snapshot_tree(const std::string& root);

/// Inode numbers of everything in a tree (the root included).
std::set<ino_t> inodes_of_tree(const std::string& root);

/// The errno of a syscall that returns -1 on failure, 0 on success (for forked children,
/// which report it as their exit status).
inline int rc_errno(long rc) { return rc < 0 ? errno : 0; }
/// open() as an errno; a descriptor it got is closed.
int open_errno(const char* path, int flags, mode_t mode = 0644);

class Attack : public ::testing::Test {
 protected:
  void SetUp() override;
  void TearDown() override;

  /// Runs `fn` in a forked child that sees only app A's views, as its container would: a
  /// private mount namespace whose root is a fresh tmpfs holding binds (nosuid, nodev) of A's
  /// views at /data, /s1 and /s2 (and /proc), chrooted into, then running as uid/gid. Returns fn's
  /// result (an errno, 0 = success); 249 and above mean the jail could not be set up. S2 is
  /// bound read-write on purpose: the refusals checked through it are the daemon's.
  int in_jail(uid_t uid, gid_t gid, const std::function<int()>& fn);

  /// Stops and starts the daemon over the same storage and views (MountedFs::restart: no fd
  /// may stay open on the mount across it) and takes the new mount's st_dev into fuse_dev_.
  /// Returns the lines the daemon logs for views it cannot serve.
  std::vector<std::string> restart();

  /// Takes the snapshots TearDown compares with. SetUp does; a fixture that adds to B's data
  /// or the read-only share after it takes them again.
  void take_snapshots();

  MountedFs m_;
  TempDir outside_{"portalfs-outside"};  // the host, outside the storage root
  TempDir jail_{"portalfs-jail"};        // an empty directory the jail's tmpfs covers
  std::string a_, a_backing_;            // A's data view
  std::string s1_, s1_backing_;          // A's read-write share (squash)
  std::string s2_, s2_backing_;          // A's read-only share
  std::string s3_, s3_backing_;          // A's read-write share (range map 0:100000:65536)
  std::string b_, b_backing_;            // B's data view
  std::string host_secret_;              // <outside>/shadow
  dev_t fuse_dev_ = 0;                   // st_dev of everything seen through the mount

 private:
  std::string before_b_, before_s2_, before_outside_;
};

}  // namespace portalfs::testutil
