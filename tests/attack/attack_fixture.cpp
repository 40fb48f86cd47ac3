// SPDX-License-Identifier: MIT
#include "tests/attack/attack_fixture.hpp"

#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <climits>
#include <csignal>
#include <cstring>
#include <functional>
#include <sstream>
#include <vector>

namespace portalfs::testutil {

namespace {

std::string hex(const char* data, size_t n) {
  static const char kDigits[] = "0123456789abcdef";
  std::string out;
  for (size_t i = 0; i < n; ++i) {
    auto b = static_cast<unsigned char>(data[i]);
    out += kDigits[b >> 4];
    out += kDigits[b & 15];
  }
  return out;
}

void describe_xattrs(const std::string& path, std::ostream& out) {
  ssize_t len = ::llistxattr(path.c_str(), nullptr, 0);
  if (len <= 0) return;
  std::vector<char> names(static_cast<size_t>(len));
  len = ::llistxattr(path.c_str(), names.data(), names.size());
  for (ssize_t i = 0; i < len;) {
    const char* name = names.data() + i;
    char value[4096];
    ssize_t v = ::lgetxattr(path.c_str(), name, value, sizeof(value));
    out << " xattr:" << name << "=" << (v < 0 ? "?" : hex(value, static_cast<size_t>(v)));
    i += static_cast<ssize_t>(std::strlen(name)) + 1;
  }
}

void describe(const std::string& abs, const std::string& rel, std::ostream& out) {
  struct stat st {};
  if (::lstat(abs.c_str(), &st) != 0) {
    out << rel << " <lstat: " << std::strerror(errno) << ">\n";
    return;
  }
  out << rel << " mode=" << std::oct << st.st_mode << std::dec << " uid=" << st.st_uid
      << " gid=" << st.st_gid << " size=" << st.st_size << " nlink=" << st.st_nlink
      << " ino=" << st.st_ino << " rdev=" << st.st_rdev << " mtime=" << st.st_mtim.tv_sec << "."
      << st.st_mtim.tv_nsec << " ctime=" << st.st_ctim.tv_sec << "." << st.st_ctim.tv_nsec;
  if (S_ISREG(st.st_mode)) {
    out << " bytes=" << hex(read_file(abs).data(), static_cast<size_t>(st.st_size));
  } else if (S_ISLNK(st.st_mode)) {
    char target[PATH_MAX];
    ssize_t n = ::readlink(abs.c_str(), target, sizeof(target));
    out << " target=" << (n < 0 ? "?" : hex(target, static_cast<size_t>(n)));
  }
  describe_xattrs(abs, out);
  out << "\n";
  if (S_ISDIR(st.st_mode)) {
    for (const auto& name : list_dir(abs)) {
      if (name != "." && name != "..") describe(abs + "/" + name, rel + "/" + name, out);
    }
  }
}

}  // namespace

std::string snapshot_tree(const std::string& root) {
  std::ostringstream out;
  describe(root, ".", out);
  return out.str();
}

std::set<ino_t> inodes_of_tree(const std::string& root) {
  std::set<ino_t> out;
  std::function<void(const std::string&)> walk = [&](const std::string& p) {
    struct stat st {};
    if (::lstat(p.c_str(), &st) != 0) return;
    out.insert(st.st_ino);
    if (!S_ISDIR(st.st_mode)) return;
    for (const auto& name : list_dir(p)) {
      if (name != "." && name != "..") walk(p + "/" + name);
    }
  };
  walk(root);
  return out;
}

int open_errno(const char* path, int flags, mode_t mode) {
  int fd = ::open(path, flags | O_CLOEXEC, mode);
  if (fd < 0) return errno;
  ::close(fd);
  return 0;
}

void Attack::SetUp() {
  PORTALFS_REQUIRE_MOUNT(m_);
  a_ = m_.add_view("a", ViewKind::data, "v");
  a_backing_ = m_.views().back().backing;
  s1_ = m_.add_view("a", ViewKind::shared_squash, "s1");
  s1_backing_ = m_.views().back().backing;
  s2_ = m_.add_view("a", ViewKind::shared_ro, "s2");
  s2_backing_ = m_.views().back().backing;
  s3_ = m_.add_view("a", ViewKind::shared_map, "s3");
  s3_backing_ = m_.views().back().backing;
  b_ = m_.add_view("b", ViewKind::data, "v");
  b_backing_ = m_.views().back().backing;

  // A's data directory belongs to the app's user, as provisioning makes it.
  ASSERT_EQ(::chown(a_backing_.c_str(), kAppUid, kAppGid), 0);
  write_file(b_backing_ + "/secret", kBSecret);
  ASSERT_EQ(::chmod((b_backing_ + "/secret").c_str(), 0600), 0);
  ASSERT_EQ(::lsetxattr((b_backing_ + "/secret").c_str(), "user.owner", "b", 1, 0), 0);
  // The read-only share's file is writable by mode and owned by the app's user: the kernel's
  // own checks let a write through, so refusing it is the daemon's job.
  write_file(s2_backing_ + "/ro_file", kReadOnlyBytes);
  ASSERT_EQ(::chown((s2_backing_ + "/ro_file").c_str(), kAppUid, kAppGid), 0);
  ASSERT_EQ(::chmod((s2_backing_ + "/ro_file").c_str(), 0666), 0);
  ASSERT_EQ(::chmod(s2_backing_.c_str(), 0777), 0);
  host_secret_ = outside_ / "shadow";
  write_file(host_secret_, kHostSecret);
  ASSERT_EQ(::chmod(host_secret_.c_str(), 0640), 0);

  struct stat st {};
  ASSERT_TRUE(Stat(a_, &st));
  fuse_dev_ = st.st_dev;
  take_snapshots();
}

void Attack::take_snapshots() {
  before_b_ = snapshot_tree(b_backing_);
  before_s2_ = snapshot_tree(s2_backing_);
  before_outside_ = snapshot_tree(outside_.path());
}

std::vector<std::string> Attack::restart() {
  auto errors = m_.restart();
  struct stat st {};
  EXPECT_TRUE(Stat(m_.mountpoint(), &st)) << "after the restart";
  fuse_dev_ = st.st_dev;
  return errors;
}

void Attack::TearDown() {
  if (!m_.ok()) return;
  EXPECT_EQ(snapshot_tree(b_backing_), before_b_) << "app B's data changed";
  EXPECT_EQ(snapshot_tree(s2_backing_), before_s2_) << "the read-only share changed";
  EXPECT_EQ(snapshot_tree(outside_.path()), before_outside_) << "the host outside changed";
}

int Attack::in_jail(uid_t uid, gid_t gid, const std::function<int()>& fn) {
  const std::string root = jail_.path();
  const std::string views[][2] = {{a_, root + "/data"}, {s1_, root + "/s1"}, {s2_, root + "/s2"}};
  pid_t pid = ::fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    // A crash here must not run the parent's handler (it would detach the parent's mounts).
    for (int sig : {SIGSEGV, SIGBUS, SIGABRT, SIGFPE, SIGILL}) ::signal(sig, SIG_DFL);
    if (::unshare(CLONE_NEWNS) != 0) ::_exit(250);
    if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) ::_exit(251);
    if (::mount("tmpfs", root.c_str(), "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755") != 0) ::_exit(252);
    for (const auto& [view, target] : views) {
      if (::mkdir(target.c_str(), 0755) != 0) ::_exit(253);
      if (::mount(view.c_str(), target.c_str(), nullptr, MS_BIND, nullptr) != 0) ::_exit(254);
      if (::mount(nullptr, target.c_str(), nullptr, MS_BIND | MS_REMOUNT | MS_NOSUID | MS_NODEV,
                  nullptr) != 0) {
        ::_exit(255);
      }
    }
    // /proc for the /proc/self/fd re-opens an attacker makes (the host's, as a container
    // without its own pid namespace would see it).
    const std::string proc = root + "/proc";
    if (::mkdir(proc.c_str(), 0555) != 0 ||
        ::mount("/proc", proc.c_str(), nullptr, MS_BIND | MS_REC, nullptr) != 0) {
      ::_exit(249);
    }
    if (::chroot(root.c_str()) != 0 || ::chdir("/") != 0) ::_exit(256);
    if (::setgroups(0, nullptr) != 0 || ::setresgid(gid, gid, gid) != 0 ||
        ::setresuid(uid, uid, uid) != 0) {
      ::_exit(257);
    }
    ::_exit(fn());
  }
  int status = 0;
  if (::waitpid(pid, &status, 0) != pid) return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

}  // namespace portalfs::testutil
