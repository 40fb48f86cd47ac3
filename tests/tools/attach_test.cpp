// SPDX-License-Identifier: MIT
// attach_binds / detach_binds against a real process in its own mount namespace (a stand-in
// for a container): a forked child that unshares its mount namespace (and, in one test, a user
// namespace), makes its mounts private and sleeps. Plain temp directories stand in for the FUSE
// views. What the "container" sees is checked through /proc/PID/root and /proc/PID/mountinfo.
// Needs root.

#include "mountmgr/attach.hpp"

#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "common/unique_fd.hpp"
#include "tests/testutil/temp_dir.hpp"

namespace portalfs::mountmgr {
namespace {

using ::testing::HasSubstr;
using testutil::read_file;
using testutil::write_file;

/// A process in a new mount namespace (optionally also a user namespace mapping 0..65535 to
/// host 100000..165535, with a tmpfs owned by its root at `tmpfs_at`) that sleeps until killed.
class Sleeper {
 public:
  explicit Sleeper(bool userns = false, const std::string& tmpfs_at = "") {
    int ready[2];
    int go[2];
    if (::pipe2(ready, O_CLOEXEC) != 0 || ::pipe2(go, O_CLOEXEC) != 0) return;
    common::UniqueFd ready_r(ready[0]), ready_w(ready[1]), go_r(go[0]), go_w(go[1]);
    const char* tmpfs_path = tmpfs_at.c_str();
    const bool want_tmpfs = !tmpfs_at.empty();

    pid_t pid = ::fork();
    if (pid < 0) return;
    if (pid == 0) {
      // Only syscalls from here on.
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive a crashed test
      auto fail = [&] {
        (void)!::write(ready_w.get(), "E", 1);
        ::_exit(1);
      };
      if (::unshare(CLONE_NEWNS | (userns ? CLONE_NEWUSER : 0)) != 0) fail();
      if (userns) {
        char c;
        (void)!::write(ready_w.get(), "U", 1);
        if (::read(go_r.get(), &c, 1) != 1) ::_exit(1);
      }
      if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) fail();
      if (want_tmpfs && ::mount("tmpfs", tmpfs_path, "tmpfs", 0, "mode=0755,uid=0,gid=0") != 0) {
        fail();
      }
      (void)!::write(ready_w.get(), "R", 1);
      for (;;) ::pause();
    }
    pid_ = pid;
    ready_w.reset();
    go_r.reset();
    char c = 0;
    if (::read(ready_r.get(), &c, 1) != 1) return;
    if (c == 'U') {
      std::string proc = "/proc/" + std::to_string(pid);
      try {
        write_file(proc + "/uid_map", "0 100000 65536\n");
        write_file(proc + "/setgroups", "deny");
        write_file(proc + "/gid_map", "0 100000 65536\n");
      } catch (const std::exception&) {
        return;
      }
      (void)!::write(go_w.get(), "g", 1);
      if (::read(ready_r.get(), &c, 1) != 1) return;
    }
    ready_ = c == 'R';
  }
  ~Sleeper() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  Sleeper(const Sleeper&) = delete;
  Sleeper& operator=(const Sleeper&) = delete;

  [[nodiscard]] bool ready() const { return ready_; }
  [[nodiscard]] int pid() const { return pid_; }
  /// What attach_binds is given for this process (a record of it).
  [[nodiscard]] ProcessIdentity identity() const {
    return identify_process(pid_).value_or(ProcessIdentity{pid_, 0, 0, 0, ""});
  }
  /// `path` as this process sees it.
  [[nodiscard]] std::string inside(const std::string& path) const {
    return "/proc/" + std::to_string(pid_) + "/root" + path;
  }
  /// This process's mountinfo lines whose mount point is `target`.
  [[nodiscard]] std::vector<std::string> mounts_at(const std::string& target) const {
    std::vector<std::string> out;
    std::ifstream in("/proc/" + std::to_string(pid_) + "/mountinfo");
    std::string line;
    while (std::getline(in, line)) {
      std::istringstream fields(line);
      std::string id, parent, devno, root, mount_point;
      fields >> id >> parent >> devno >> root >> mount_point;
      if (mount_point == target) out.push_back(line);
    }
    return out;
  }

 private:
  int pid_ = -1;
  bool ready_ = false;
};

bool exists(const std::string& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0;
}

class AttachTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root (mount namespaces, move_mount)";
    std::filesystem::create_directories(dir_ / "src");
    std::filesystem::create_directories(dir_ / "src2");
    std::filesystem::create_directories(dir_ / "ctr/target");
    write_file(dir_ / "src/hello", "from the view\n");
    write_file(dir_ / "src2/other", "second view\n");
    sleeper_ = std::make_unique<Sleeper>();
    if (!sleeper_->ready()) GTEST_SKIP() << "cannot create a mount namespace here";
  }
  void TearDown() override { sleeper_.reset(); }  // kills the process: its mounts go with it

  testutil::TempDir dir_{"portalfs-attach"};
  std::unique_ptr<Sleeper> sleeper_;
};

TEST_F(AttachTest, BindIsVisibleInsideOnlyAndWritable) {
  const std::string target = dir_ / "ctr/target";
  ASSERT_EQ(attach_binds(sleeper_->identity(), {{dir_ / "src", target, false}}), "");
  EXPECT_EQ(read_file(sleeper_->inside(target + "/hello")), "from the view\n");
  EXPECT_FALSE(exists(target + "/hello")) << "the mount leaked into the host namespace";
  write_file(sleeper_->inside(target + "/written"), "x");
  EXPECT_EQ(read_file(dir_ / "src/written"), "x");

  auto lines = sleeper_->mounts_at(target);
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_THAT(lines[0], HasSubstr("nosuid"));
  EXPECT_THAT(lines[0], HasSubstr("nodev"));
  EXPECT_THAT(lines[0], ::testing::Not(HasSubstr(" ro,")));
}

TEST_F(AttachTest, ReadOnlyBindRefusesWritesWithErofs) {
  const std::string target = dir_ / "ctr/target";
  ASSERT_EQ(attach_binds(sleeper_->identity(), {{dir_ / "src", target, true}}), "");
  EXPECT_EQ(read_file(sleeper_->inside(target + "/hello")), "from the view\n");

  errno = 0;
  int fd = ::open(sleeper_->inside(target + "/new").c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
  EXPECT_EQ(fd, -1);
  EXPECT_EQ(errno, EROFS);
  if (fd >= 0) ::close(fd);
  EXPECT_EQ(::mkdir(sleeper_->inside(target + "/d").c_str(), 0755), -1);
  EXPECT_EQ(errno, EROFS);
  EXPECT_EQ(::open(sleeper_->inside(target + "/hello").c_str(), O_WRONLY | O_APPEND | O_CLOEXEC),
            -1);
  EXPECT_EQ(errno, EROFS);

  auto lines = sleeper_->mounts_at(target);
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_THAT(lines[0], HasSubstr(" ro,nosuid,nodev"));
}

TEST_F(AttachTest, DetachRemovesTheBind) {
  const std::string target = dir_ / "ctr/target";
  ASSERT_EQ(attach_binds(sleeper_->identity(), {{dir_ / "src", target, false}}), "");
  ASSERT_TRUE(exists(sleeper_->inside(target + "/hello")));
  EXPECT_EQ(detach_binds(sleeper_->identity(), {target}), "");
  EXPECT_FALSE(exists(sleeper_->inside(target + "/hello")));
  EXPECT_TRUE(sleeper_->mounts_at(target).empty());
  // Nothing mounted there any more (and a target that does not exist): not an error.
  EXPECT_EQ(detach_binds(sleeper_->identity(), {target, dir_ / "ctr/never"}), "");
}

TEST_F(AttachTest, MissingTargetDirectoriesAreCreated) {
  const std::string target = dir_ / "ctr/a/b/c";
  ASSERT_EQ(attach_binds(sleeper_->identity(), {{dir_ / "src", target, false}}), "");
  EXPECT_EQ(read_file(sleeper_->inside(target + "/hello")), "from the view\n");
  EXPECT_TRUE(
      std::filesystem::is_directory(dir_ / "ctr/a/b/c"));  // directories are not per-namespace
}

TEST_F(AttachTest, NestedBindsParentsFirstDetachChildrenFirst) {
  const std::string parent = dir_ / "ctr/target";
  const std::string child = parent + "/sub";
  ASSERT_EQ(
      attach_binds(sleeper_->identity(), {{dir_ / "src", parent, false}, {dir_ / "src2", child, true}}),
      "");
  EXPECT_EQ(read_file(sleeper_->inside(parent + "/hello")), "from the view\n");
  EXPECT_EQ(read_file(sleeper_->inside(child + "/other")), "second view\n");
  EXPECT_EQ(sleeper_->mounts_at(child).size(), 1u);

  EXPECT_EQ(detach_binds(sleeper_->identity(), {parent, child}), "");
  EXPECT_TRUE(sleeper_->mounts_at(parent).empty());
  EXPECT_TRUE(sleeper_->mounts_at(child).empty());
}

TEST_F(AttachTest, AttachingAgainReplacesTheMountThere) {
  const std::string target = dir_ / "ctr/target";
  ASSERT_EQ(attach_binds(sleeper_->identity(), {{dir_ / "src", target, false}}), "");
  ASSERT_EQ(attach_binds(sleeper_->identity(), {{dir_ / "src2", target, false}}), "");
  EXPECT_EQ(sleeper_->mounts_at(target).size(), 1u);
  EXPECT_TRUE(exists(sleeper_->inside(target + "/other")));
  EXPECT_FALSE(exists(sleeper_->inside(target + "/hello")));
}

TEST_F(AttachTest, ErrorsAreOneLine) {
  const ProcessIdentity process = sleeper_->identity();
  const std::string p = std::to_string(process.pid);
  const std::string target = dir_ / "ctr/target";

  EXPECT_EQ(attach_binds(process, {{dir_ / "nope", target, false}}),
            "attach " + target + " into pid " + p + ": open_tree " + (dir_ / "nope") +
                ": No such file or directory");
  EXPECT_EQ(attach_binds(process, {{dir_ / "src", "relative/x", false}}),
            "attach relative/x into pid " + p +
                ": expected an absolute target path other than / without . or .. components");
  EXPECT_THAT(attach_binds(process, {{dir_ / "src", "/", false}}), HasSubstr("other than /"));
  EXPECT_THAT(attach_binds(process, {{dir_ / "src", "/a/../etc", false}}), HasSubstr(".. components"));

  // A regular file where the target directory should be.
  write_file(dir_ / "ctr/file", "");
  EXPECT_EQ(attach_binds(process, {{dir_ / "src", dir_ / "ctr/file", false}}),
            "attach " + (dir_ / "ctr/file") + " into pid " + p + ": stat " + (dir_ / "ctr/file") +
                ": Not a directory");
  EXPECT_EQ(attach_binds(process, {{dir_ / "src", dir_ / "ctr/file/x", false}}),
            "attach " + (dir_ / "ctr/file/x") + " into pid " + p + ": stat " + (dir_ / "ctr/file") +
                ": Not a directory");
  // A directory that cannot be created: its parent is read-only inside the container.
  ASSERT_EQ(attach_binds(process, {{dir_ / "src", target, true}}), "");
  EXPECT_EQ(attach_binds(process, {{dir_ / "src2", target + "/sub", false}}),
            "attach " + target + "/sub into pid " + p + ": mkdir " + target +
                "/sub: Read-only file system");
  // A symlink as the target itself is refused (move_mount does not follow it).
  ASSERT_EQ(::symlink("target", (dir_ / "ctr/link").c_str()), 0);
  EXPECT_EQ(attach_binds(process, {{dir_ / "src", dir_ / "ctr/link", false}}),
            "attach " + (dir_ / "ctr/link") + " into pid " + p + ": stat " + (dir_ / "ctr/link") +
                ": Not a directory");

  const ProcessIdentity nobody{999999999, 1, 2, 3, ""};
  EXPECT_EQ(attach_binds(nobody, {{dir_ / "src", target, false}}), "attach into pid 999999999: no such process");
  EXPECT_EQ(detach_binds(nobody, {target}), "detach from pid 999999999: no such process");
  EXPECT_EQ(attach_binds(*identify_process(static_cast<int>(::getpid())), {{dir_ / "src", target, false}}),
            "attach into pid " + std::to_string(::getpid()) +
                ": the process is in portalfsd's own mount namespace (not in a container)");
  EXPECT_EQ(attach_binds(process, {}), "");
  EXPECT_EQ(detach_binds(process, {}), "");
}

/// Field 22 of /proc/PID/stat, read the plain way (to check identify_process against).
uint64_t start_time_of(int pid) {
  const std::string stat = read_file("/proc/" + std::to_string(pid) + "/stat");
  std::istringstream fields(stat.substr(stat.rfind(')') + 1));
  std::string field;
  for (int number = 3; number <= 22; ++number) fields >> field;
  return std::stoull(field);
}

TEST(IdentifyProcess, LiveDeadAndZombie) {
  const int self = static_cast<int>(::getpid());
  const auto me = identify_process(self);
  ASSERT_TRUE(me.has_value());
  struct stat ns {};
  ASSERT_EQ(::stat("/proc/self/ns/mnt", &ns), 0);
  std::string boot = read_file("/proc/sys/kernel/random/boot_id");
  boot.pop_back();  // the newline
  EXPECT_EQ(*me, (ProcessIdentity{self, start_time_of(self), ns.st_dev, ns.st_ino, boot}));
  EXPECT_EQ(identity_change(*me, identify_process(self)), "");
  EXPECT_FALSE(identify_process(0));
  EXPECT_FALSE(identify_process(-1));
  EXPECT_FALSE(identify_process(999999999));

  pid_t child = ::fork();
  if (child == 0) ::_exit(0);
  ASSERT_GT(child, 0);
  // Until it is reaped the child is a zombie: nothing to identify.
  bool zombie = false;
  for (int i = 0; i < 200 && !zombie; ++i) {
    zombie = !identify_process(child);
    if (!zombie) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_TRUE(zombie);
  ::waitpid(child, nullptr, 0);
  EXPECT_FALSE(identify_process(child));
}

// A comm with ')' and spaces does not shift the fields: the identity is the same before and
// after the process renames itself.
TEST(IdentifyProcess, CommWithParenthesesAndSpaces) {
  int go[2];
  ASSERT_EQ(::pipe2(go, O_CLOEXEC), 0);
  common::UniqueFd go_r(go[0]), go_w(go[1]);
  pid_t child = ::fork();
  if (child == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    char c;
    if (::read(go_r.get(), &c, 1) == 1) ::prctl(PR_SET_NAME, "a) b) Z 9 9");
    for (;;) ::pause();
  }
  ASSERT_GT(child, 0);
  const std::string comm = "/proc/" + std::to_string(child) + "/comm";
  const auto before = identify_process(child);
  ASSERT_EQ(::write(go_w.get(), "g", 1), 1);
  bool renamed = false;
  for (int i = 0; i < 200 && !renamed; ++i) {
    renamed = read_file(comm) == "a) b) Z 9 9\n";
    if (!renamed) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  const auto after = identify_process(child);
  ::kill(child, SIGKILL);
  ::waitpid(child, nullptr, 0);
  ASSERT_TRUE(renamed);
  ASSERT_TRUE(before.has_value());
  EXPECT_EQ(after, before);
}

// E4c: in a user-namespaced container the mount point is created as the container's root;
// host root would get EOVERFLOW from a tmpfs owned by the container's user namespace.
TEST(AttachUserns, MountPointCreatedAsTheContainersRoot) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root";
  testutil::TempDir dir("portalfs-attach-userns");
  ASSERT_EQ(::chmod(dir.path().c_str(), 0755), 0);  // container root (host 100000) walks it
  std::filesystem::create_directories(dir / "src");
  std::filesystem::create_directories(dir / "ctr");
  write_file(dir / "src/hello", "hi\n");
  Sleeper sleeper(true, dir / "ctr");
  if (!sleeper.ready()) GTEST_SKIP() << "cannot create a user namespace here";

  const std::string target = dir / "ctr/views/app1";
  ASSERT_EQ(attach_binds(sleeper.identity(), {{dir / "src", target, false}}), "");
  EXPECT_EQ(read_file(sleeper.inside(target + "/hello")), "hi\n");
  struct stat st {};
  ASSERT_EQ(::stat(sleeper.inside(dir / "ctr/views").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 100000u);
  EXPECT_EQ(st.st_gid, 100000u);
  EXPECT_EQ(detach_binds(sleeper.identity(), {target}), "");
  EXPECT_FALSE(exists(sleeper.inside(target + "/hello")));
}

}  // namespace
}  // namespace portalfs::mountmgr
