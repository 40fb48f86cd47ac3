// SPDX-License-Identifier: MIT
#pragma once

#include <string>

namespace portalfs::testutil {

/// A fresh directory below $TMPDIR (or /tmp), removed recursively on destruction.
/// Anything mounted below it must be unmounted before it goes.
class TempDir {
 public:
  explicit TempDir(const std::string& prefix = "portalfs-test");
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir();
  [[nodiscard]] const std::string& path() const { return path_; }
  /// path() + "/" + rel
  [[nodiscard]] std::string operator/(const std::string& rel) const { return path_ + "/" + rel; }

 private:
  std::string path_;
};

/// Writes `content` to `path` (created or truncated); throws on failure.
void write_file(const std::string& path, const std::string& content);
/// Reads a whole file; throws on failure.
std::string read_file(const std::string& path);

/// What a state directory holds on disk (mountmgr/state_store.hpp): state.json, then
/// state.journal (the changes since; "" when there is none). For "nothing on disk changed"
/// checks and for looking for a name; to read the state itself, use read_state_dir().
std::string state_files(const std::string& state_dir);

/// Whether tests that need /dev/fuse (or runc) must fail instead of skipping: set by .ci/run
/// through PORTALFS_REQUIRE_FUSE=1.
bool require_fuse();

/// The target of the symlink at `path`, or "<readlink: reason>".
std::string readlink_str(const std::string& path);
/// Whether anything (a dangling symlink too) is at `path`.
bool exists(const std::string& path);

}  // namespace portalfs::testutil

/// Skips the test with `reason`, or fails it when PORTALFS_REQUIRE_FUSE=1 (CI).
#define PORTALFS_SKIP_OR_FAIL(reason)                                            \
  do {                                                                           \
    if (::portalfs::testutil::require_fuse()) FAIL() << "required: " << reason;  \
    GTEST_SKIP() << reason;                                                      \
  } while (0)
