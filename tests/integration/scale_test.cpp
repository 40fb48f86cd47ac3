// SPDX-License-Identifier: MIT
// Bounded resources (DESIGN "The filesystem"): a view of far more files than the process may
// have open fds still works. This process is capped at 20,000 open files before the mount
// (the daemon runs in it, so the cap is the daemon's), the fd cache holds 4,096, and every
// file of a large tree is stat'ed through the view.
//
// The default is 200,000 files in 1,000 directories, which fits the suite's time budget on
// two cores; PORTALFS_SCALE_FILES=1000000 runs the photo-library case by hand. The figures
// (files, seconds, daemon inodes, RSS per inode) go to stdout and to the test's properties.
#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "tests/integration/fs_helpers.hpp"
#include "tests/integration/mounted_fs.hpp"

namespace portalfs::testutil {
namespace {

constexpr rlim_t kFdLimit = 20000;  // what these machines allow, and root can't raise
constexpr size_t kFdCache = 4096;

size_t env_count(const char* name, size_t fallback) {
  const char* v = std::getenv(name);
  if (!v || !*v) return fallback;
  return static_cast<size_t>(std::strtoull(v, nullptr, 10));
}

std::string dir_name(size_t i) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "d%04zu", i);
  return buf;
}

/// Makes `files` empty files spread over `dirs` directories below `root`, straight on the
/// backing file system (mknodat: no fd per file). Returns the number made.
size_t generate(const std::string& root, size_t files, size_t dirs) {
  int rfd = ::open(root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (rfd < 0) return 0;
  size_t made = 0;
  for (size_t d = 0; d < dirs; ++d) {
    const std::string dn = dir_name(d);
    if (::mkdirat(rfd, dn.c_str(), 0755) != 0) break;
    int dfd = ::openat(rfd, dn.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) break;
    const size_t here = files / dirs + (d < files % dirs ? 1 : 0);
    for (size_t f = 0; f < here; ++f) {
      char name[32];
      std::snprintf(name, sizeof(name), "f%07zu.jpg", made);
      if (::mknodat(dfd, name, S_IFREG | 0644, 0) == 0) made++;
    }
    ::close(dfd);
  }
  ::close(rfd);
  return made;
}

struct Walk {
  size_t dirs = 0;
  size_t files = 0;
  size_t failures = 0;
  std::string first_failure;
};

void fail(Walk& w, const std::string& what) {
  if (w.failures++ == 0) w.first_failure = what + ": " + std::strerror(errno);
}

/// readdir + fstatat of every entry, two levels deep, relative to directory fds.
Walk stat_everything(const std::string& view) {
  Walk w;
  DIR* top = ::opendir(view.c_str());
  if (!top) {
    fail(w, "opendir " + view);
    return w;
  }
  while (dirent* de = ::readdir(top)) {
    if (de->d_name[0] == '.') continue;
    int dfd = ::openat(::dirfd(top), de->d_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) {
      fail(w, std::string("open ") + de->d_name);
      continue;
    }
    w.dirs++;
    DIR* d = ::fdopendir(dfd);
    if (!d) {
      fail(w, std::string("fdopendir ") + de->d_name);
      ::close(dfd);
      continue;
    }
    while (dirent* fe = ::readdir(d)) {
      if (fe->d_name[0] == '.') continue;
      struct stat st {};
      if (::fstatat(dfd, fe->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode)) {
        fail(w, std::string(de->d_name) + "/" + fe->d_name);
        continue;
      }
      w.files++;
    }
    ::closedir(d);
  }
  ::closedir(top);
  return w;
}

TEST(Scale, StatEveryFileOfAViewLargerThanTheFdLimit) {
  const size_t want_files = env_count("PORTALFS_SCALE_FILES", 200000);
  const size_t dirs = std::min<size_t>(1000, std::max<size_t>(1, want_files));

  // Cap open files first: the daemon's threads are this process's.
  struct rlimit rl {};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &rl), 0);
  rl.rlim_cur = std::min(kFdLimit, rl.rlim_max);
  rl.rlim_max = rl.rlim_cur;
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &rl), 0) << std::strerror(errno);

  // A hand-made run of millions of files takes minutes: the watchdog waits for the ctest
  // timeout instead of the usual four minutes.
  MountedFs m(fuse::Options{.fd_cache = kFdCache}, std::chrono::seconds(570));
  PORTALFS_REQUIRE_MOUNT(m);
  const std::string backing = m.storage() + "/photos";
  ASSERT_EQ(::mkdir(backing.c_str(), 0755), 0);
  auto t0 = std::chrono::steady_clock::now();
  const size_t made = generate(backing, want_files, dirs);
  ASSERT_EQ(made, want_files) << std::strerror(errno);
  const double gen_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  const std::string view = m.add_view("app", ViewKind::data, "photos", backing);
  const long rss_before = vm_rss_kib();
  const size_t inodes_before = m.fs().stats().inodes;

  t0 = std::chrono::steady_clock::now();
  Walk w = stat_everything(view);
  const double walk_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  const long rss_after = vm_rss_kib();
  const auto stats = m.fs().stats();
  const size_t new_inodes = stats.inodes - inodes_before;
  const double bytes_per_inode =
      new_inodes ? 1024.0 * static_cast<double>(rss_after - rss_before) / static_cast<double>(new_inodes) : 0;

  std::printf("scale: %zu files in %zu dirs (generated in %.1f s), stat'ed through the view in %.1f s\n"
              "scale: daemon inodes %zu, cached fds %zu of %zu, open fds %zu (limit %llu)\n"
              "scale: VmRSS %ld -> %ld KiB, %.0f bytes per inode\n",
              made, dirs, gen_s, walk_s, stats.inodes, stats.cached_fds, stats.fd_cache_capacity,
              count_open_fds(), static_cast<unsigned long long>(rl.rlim_cur), rss_before, rss_after,
              bytes_per_inode);
  RecordProperty("files", std::to_string(made));
  RecordProperty("walk_seconds", std::to_string(walk_s));
  RecordProperty("daemon_inodes", std::to_string(stats.inodes));
  RecordProperty("rss_bytes_per_inode", std::to_string(static_cast<long>(bytes_per_inode)));

  EXPECT_EQ(w.failures, 0u) << "first failure: " << w.first_failure;
  EXPECT_EQ(w.dirs, dirs);
  EXPECT_EQ(w.files, made);
  EXPECT_LE(stats.cached_fds, stats.fd_cache_capacity);
  EXPECT_EQ(stats.fd_cache_capacity, kFdCache);
  if (made > kFdLimit) {
    // More inodes alive at once than the process may have open files: the table keeps
    // identities as handles, not as open fds.
    EXPECT_GT(stats.inodes, static_cast<size_t>(kFdLimit));
  }
}

}  // namespace
}  // namespace portalfs::testutil
