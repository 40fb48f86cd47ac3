// SPDX-License-Identifier: MIT
// attach_binds / detach_binds against a real process in its own mount namespace (a stand-in
// for a container): a forked child that unshares its mount namespace (and, in one test, a user
// namespace), makes its mounts private and sleeps. Plain temp directories stand in for the FUSE
// views. What the "container" sees is checked through /proc/PID/root and /proc/PID/mountinfo.
// The recycled-pid tests give a second such process the pid of a first one that is gone (through
// /proc/sys/kernel/ns_last_pid), and the last one does it across a restart of the real portalfsd.
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
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "common/unique_fd.hpp"
#include "mountmgr/state.hpp"
#include "mountmgr/state_store.hpp"
#include "tests/testutil/daemon_fixture.hpp"
#include "tests/testutil/temp_dir.hpp"

namespace portalfs::mountmgr {
namespace {

using ::testing::HasSubstr;
using testutil::read_file;
using testutil::wait_until;
using testutil::write_file;
using namespace std::chrono_literals;

/// The one line `call` throws (attach_binds and detach_binds throw std::runtime_error).
template <typename Call>
std::string thrown(Call call) {
  try {
    call();
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return "(nothing thrown)";
}

struct SleeperOptions {
  bool userns = false;    // also a user namespace mapping 0..65535 to host 100000..165535
  std::string tmpfs_at;   // a tmpfs owned by its root mounted here
  std::string root;       // pivot_root into this directory, as a container runtime does
  int pid = 0;            // fork with this pid (through ns_last_pid; see sleeper_with_pid)
};

/// Options for a process whose root is `root` (with a tmpfs of its own at `tmpfs_at`, a host path
/// below `root`, when given).
SleeperOptions in_root(const std::string& root, const std::string& tmpfs_at = "") {
  SleeperOptions options;
  options.root = root;
  options.tmpfs_at = tmpfs_at;
  return options;
}

/// A process in a new mount namespace (see SleeperOptions) that sleeps until killed.
class Sleeper {
 public:
  explicit Sleeper(bool userns = false, const std::string& tmpfs_at = "")
      : Sleeper(SleeperOptions{userns, tmpfs_at, "", 0}) {}
  explicit Sleeper(const SleeperOptions& options) {
    int ready[2];
    int go[2];
    if (::pipe2(ready, O_CLOEXEC) != 0 || ::pipe2(go, O_CLOEXEC) != 0) return;
    common::UniqueFd ready_r(ready[0]), ready_w(ready[1]), go_r(go[0]), go_w(go[1]);
    const char* tmpfs_path = options.tmpfs_at.c_str();
    const bool want_tmpfs = !options.tmpfs_at.empty();
    const char* root = options.root.c_str();
    const bool want_root = !options.root.empty();
    const bool userns = options.userns;

    if (options.pid > 0) {
      // The next pid handed out is the one after this (racy: another process may fork first).
      try {
        write_file("/proc/sys/kernel/ns_last_pid", std::to_string(options.pid - 1));
      } catch (const std::exception&) {
        return;
      }
    }
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
      // The namespace's root becomes `root` and the host's tree is gone from it: what setns
      // then sees as "/" (a view attached at /data lands in root/data, not in the host's /data).
      if (want_root) {
        if (::mount(root, root, nullptr, MS_BIND | MS_REC, nullptr) != 0 || ::chdir(root) != 0 ||
            ::syscall(SYS_pivot_root, ".", ".") != 0 || ::umount2(".", MNT_DETACH) != 0 || ::chdir("/") != 0) {
          fail();
        }
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

/// A Sleeper that got the pid `pid`, free again after its process was reaped. Another process
/// on the machine may fork between the write to ns_last_pid and ours, so a few tries; nullptr
/// when it never got it (or did not get ready).
std::unique_ptr<Sleeper> sleeper_with_pid(int pid, SleeperOptions options) {
  options.pid = pid;
  // Not in the clock tick the predecessor started in (it started before this call): the start
  // time has tick resolution, and with the pid and the recycled namespace inode number the
  // newcomer would look like the predecessor in every way (see ProcessIdentity).
  std::this_thread::sleep_for(std::chrono::milliseconds(3 * 1000 / ::sysconf(_SC_CLK_TCK)));
  for (int attempt = 0; attempt < 100; ++attempt) {
    auto sleeper = std::make_unique<Sleeper>(options);
    if (sleeper->pid() == pid) {
      ::testing::Test::RecordProperty("pid_tries", attempt + 1);
      return sleeper->ready() ? std::move(sleeper) : nullptr;
    }
    sleeper.reset();  // kills the one that got another pid
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return nullptr;
}

using testutil::exists;

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
  ASSERT_NO_THROW(attach_binds(sleeper_->identity(), {{dir_ / "src", target, false}}));
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
  ASSERT_NO_THROW(attach_binds(sleeper_->identity(), {{dir_ / "src", target, true}}));
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
  ASSERT_NO_THROW(attach_binds(sleeper_->identity(), {{dir_ / "src", target, false}}));
  ASSERT_TRUE(exists(sleeper_->inside(target + "/hello")));
  EXPECT_NO_THROW(detach_binds(sleeper_->identity(), {target}));
  EXPECT_FALSE(exists(sleeper_->inside(target + "/hello")));
  EXPECT_TRUE(sleeper_->mounts_at(target).empty());
  // Nothing mounted there any more (and a target that does not exist): not an error.
  EXPECT_NO_THROW(detach_binds(sleeper_->identity(), {target, dir_ / "ctr/never"}));
}

TEST_F(AttachTest, MissingTargetDirectoriesAreCreated) {
  const std::string target = dir_ / "ctr/a/b/c";
  ASSERT_NO_THROW(attach_binds(sleeper_->identity(), {{dir_ / "src", target, false}}));
  EXPECT_EQ(read_file(sleeper_->inside(target + "/hello")), "from the view\n");
  EXPECT_TRUE(
      std::filesystem::is_directory(dir_ / "ctr/a/b/c"));  // directories are not per-namespace
}

TEST_F(AttachTest, NestedBindsParentsFirstDetachChildrenFirst) {
  const std::string parent = dir_ / "ctr/target";
  const std::string child = parent + "/sub";
  ASSERT_NO_THROW(attach_binds(sleeper_->identity(), {{dir_ / "src", parent, false}, {dir_ / "src2", child, true}}));
  EXPECT_EQ(read_file(sleeper_->inside(parent + "/hello")), "from the view\n");
  EXPECT_EQ(read_file(sleeper_->inside(child + "/other")), "second view\n");
  EXPECT_EQ(sleeper_->mounts_at(child).size(), 1u);

  EXPECT_NO_THROW(detach_binds(sleeper_->identity(), {parent, child}));
  EXPECT_TRUE(sleeper_->mounts_at(parent).empty());
  EXPECT_TRUE(sleeper_->mounts_at(child).empty());
}

TEST_F(AttachTest, AttachingAgainReplacesTheMountThere) {
  const std::string target = dir_ / "ctr/target";
  ASSERT_NO_THROW(attach_binds(sleeper_->identity(), {{dir_ / "src", target, false}}));
  ASSERT_NO_THROW(attach_binds(sleeper_->identity(), {{dir_ / "src2", target, false}}));
  EXPECT_EQ(sleeper_->mounts_at(target).size(), 1u);
  EXPECT_TRUE(exists(sleeper_->inside(target + "/other")));
  EXPECT_FALSE(exists(sleeper_->inside(target + "/hello")));
}

// The namespace fd setns would use is checked against the record: a record of another
// process (another start time) or of another namespace is refused, and nothing is mounted or
// unmounted.
TEST_F(AttachTest, AnIdentityThatIsNotTheProcessIsRefused) {
  const std::string target = dir_ / "ctr/target";
  const ProcessIdentity real = sleeper_->identity();
  const std::string p = std::to_string(real.pid);
  ProcessIdentity earlier = real;
  earlier.start_time -= 1;
  EXPECT_EQ(thrown([&] { attach_binds(earlier, {{dir_ / "src", target, false}}); }),
            "attach into pid " + p + ": pid " + p + " is another process now (started at tick " +
                std::to_string(real.start_time) + ", the recorded one at tick " +
                std::to_string(earlier.start_time) + ")");
  ProcessIdentity moved = real;
  moved.mnt_ns_ino += 1;
  EXPECT_EQ(thrown([&] { attach_binds(moved, {{dir_ / "src", target, false}}); }),
            "attach into pid " + p + ": the process is in another mount namespace now (" + format_mnt_ns(real) +
                ", recorded " + format_mnt_ns(moved) + ")");
  ProcessIdentity before_reboot = real;
  before_reboot.boot_id = "00000000-0000-0000-0000-000000000000";
  EXPECT_EQ(thrown([&] { attach_binds(before_reboot, {{dir_ / "src", target, false}}); }),
            "attach into pid " + p + ": pid " + p + " is another process now (recorded before a reboot: boot " +
                before_reboot.boot_id + ", now " + real.boot_id + ")");
  EXPECT_TRUE(sleeper_->mounts_at(target).empty());

  ASSERT_NO_THROW(attach_binds(real, {{dir_ / "src", target, false}}));
  EXPECT_THAT(thrown([&] { detach_binds(earlier, {target}); }),
              HasSubstr("detach from pid " + p + ": pid " + p + " is another process now"));
  EXPECT_THAT(thrown([&] { detach_binds(moved, {target}); }), HasSubstr("another mount namespace now"));
  EXPECT_EQ(sleeper_->mounts_at(target).size(), 1u);
}

// The record of a process that is gone, used against a newcomer that got its pid and has a
// mount of its own at the target: refused, the newcomer's mount left alone.
TEST_F(AttachTest, ARecycledPidGetsNothingFromTheRecordOfTheProcessBefore) {
  const std::string target = dir_ / "ctr/target";
  const ProcessIdentity recorded = sleeper_->identity();
  const int pid = recorded.pid;
  sleeper_.reset();
  auto newcomer = sleeper_with_pid(pid, SleeperOptions{false, target, "", 0});
  ASSERT_NE(newcomer, nullptr) << "no process got pid " << pid << " again in 100 tries";
  write_file(newcomer->inside(target + "/mine"), "the newcomer's own\n");
  ASSERT_NE(newcomer->identity(), recorded);

  EXPECT_THAT(thrown([&] { attach_binds(recorded, {{dir_ / "src", target, false}}); }),
              HasSubstr("is another process now"));
  EXPECT_THAT(thrown([&] { detach_binds(recorded, {target}); }), HasSubstr("is another process now"));
  ASSERT_EQ(newcomer->mounts_at(target).size(), 1u);
  EXPECT_THAT(newcomer->mounts_at(target)[0], HasSubstr(" - tmpfs "));
  EXPECT_EQ(read_file(newcomer->inside(target + "/mine")), "the newcomer's own\n");
  EXPECT_FALSE(exists(newcomer->inside(target + "/hello")));
}

TEST_F(AttachTest, ErrorsAreOneLine) {
  const ProcessIdentity process = sleeper_->identity();
  const std::string p = std::to_string(process.pid);
  const std::string target = dir_ / "ctr/target";

  EXPECT_EQ(thrown([&] { attach_binds(process, {{dir_ / "nope", target, false}}); }),
            "attach " + target + " into pid " + p + ": open_tree " + (dir_ / "nope") +
                ": No such file or directory");
  EXPECT_EQ(thrown([&] { attach_binds(process, {{dir_ / "src", "relative/x", false}}); }),
            "attach relative/x into pid " + p +
                ": expected an absolute target path other than / without . or .. components");
  EXPECT_THAT(thrown([&] { attach_binds(process, {{dir_ / "src", "/", false}}); }), HasSubstr("other than /"));
  EXPECT_THAT(thrown([&] { attach_binds(process, {{dir_ / "src", "/a/../etc", false}}); }), HasSubstr(".. components"));

  // A regular file where the target directory should be.
  write_file(dir_ / "ctr/file", "");
  EXPECT_EQ(thrown([&] { attach_binds(process, {{dir_ / "src", dir_ / "ctr/file", false}}); }),
            "attach " + (dir_ / "ctr/file") + " into pid " + p + ": stat " + (dir_ / "ctr/file") +
                ": Not a directory");
  EXPECT_EQ(thrown([&] { attach_binds(process, {{dir_ / "src", dir_ / "ctr/file/x", false}}); }),
            "attach " + (dir_ / "ctr/file/x") + " into pid " + p + ": stat " + (dir_ / "ctr/file") +
                ": Not a directory");
  // A directory that cannot be created: its parent is read-only inside the container.
  ASSERT_NO_THROW(attach_binds(process, {{dir_ / "src", target, true}}));
  EXPECT_EQ(thrown([&] { attach_binds(process, {{dir_ / "src2", target + "/sub", false}}); }),
            "attach " + target + "/sub into pid " + p + ": mkdir " + target +
                "/sub: Read-only file system");
  // A symlink as the target itself is refused (move_mount does not follow it).
  ASSERT_EQ(::symlink("target", (dir_ / "ctr/link").c_str()), 0);
  EXPECT_EQ(thrown([&] { attach_binds(process, {{dir_ / "src", dir_ / "ctr/link", false}}); }),
            "attach " + (dir_ / "ctr/link") + " into pid " + p + ": stat " + (dir_ / "ctr/link") +
                ": Not a directory");

  const ProcessIdentity nobody{999999999, 1, 2, 3, ""};
  EXPECT_EQ(thrown([&] { attach_binds(nobody, {{dir_ / "src", target, false}}); }),
            "attach into pid 999999999: no such process");
  EXPECT_EQ(thrown([&] { detach_binds(nobody, {target}); }), "detach from pid 999999999: no such process");
  const ProcessIdentity self = *identify_process(static_cast<int>(::getpid()));
  EXPECT_EQ(thrown([&] { attach_binds(self, {{dir_ / "src", target, false}}); }),
            "attach into pid " + std::to_string(::getpid()) +
                ": the process is in portalfsd's own mount namespace (not in a container)");
  EXPECT_NO_THROW(attach_binds(process, {}));
  EXPECT_NO_THROW(detach_binds(process, {}));
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
  ASSERT_NO_THROW(attach_binds(sleeper.identity(), {{dir / "src", target, false}}));
  EXPECT_EQ(read_file(sleeper.inside(target + "/hello")), "hi\n");
  struct stat st {};
  ASSERT_EQ(::stat(sleeper.inside(dir / "ctr/views").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 100000u);
  EXPECT_EQ(st.st_gid, 100000u);
  EXPECT_NO_THROW(detach_binds(sleeper.identity(), {target}));
  EXPECT_FALSE(exists(sleeper.inside(target + "/hello")));
}

// The reproduction of the bug, end to end: app alpha is attached to a process; portalfsd
// restarts; meanwhile the process is gone and a process in another mount namespace (another
// container) got its pid. portalfsd used to log "re-attached 1 container mount set(s)" and the
// newcomer read alpha's secret from /data. Both processes pivot_root into a directory of their
// own, as a container runtime's do.
class AttachRecycledPid : public testutil::DaemonFixture {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) PORTALFS_SKIP_OR_FAIL("needs root (mount namespaces, pivot_root, ns_last_pid)");
    DaemonFixture::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    for (const char* root : {"rootfs-first", "rootfs-newcomer/data"}) {
      std::filesystem::create_directories(dir_ / root);
    }
    ASSERT_NO_FATAL_FAILURE(start());
    write_file(dir_ / "alpha.json", R"({"name": "alpha", "v": "1.0", "data_dirs": ["/data"]})");
    const auto r = ctl({"app", "install", dir_ / "alpha.json"});
    ASSERT_EQ(r.code, 0) << r.err;
    write_file(storage() + "/apps/alpha/data/secret.txt", "alpha's secret\n");
  }

  std::string log() const { return read_file(dir_ / "daemon.log"); }
  State state() const { return read_state_dir(dir_ / "state"); }  // state.json and its journal
  static std::size_t count(const std::string& text, const std::string& part) {
    std::size_t n = 0;
    for (auto at = text.find(part); at != std::string::npos; at = text.find(part, at + 1)) ++n;
    return n;
  }
  static std::string read_or_error(const std::string& path) {
    try {
      return read_file(path);
    } catch (const std::exception& e) {
      return e.what();
    }
  }
};

TEST_F(AttachRecycledPid, ARestartedDaemonGivesNothingToANewProcessWithTheRecordedPid) {
  auto first = std::make_unique<Sleeper>(in_root(dir_ / "rootfs-first"));
  ASSERT_TRUE(first->ready());
  const int pid = first->pid();
  const std::string p = std::to_string(pid);
  const ProcessIdentity recorded = first->identity();
  auto r = ctl({"attach", "alpha", "--pid", p});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(read_file(first->inside("/data/secret.txt")), "alpha's secret\n");
  ASSERT_EQ(state().attachments.size(), 1u);
  EXPECT_EQ(state().attachments[0].process, recorded);

  // A restart while the process lives heals its mounts: what the check must not break.
  ASSERT_EQ(daemon_->stop(SIGTERM), 0);
  ASSERT_NO_FATAL_FAILURE(start());
  EXPECT_TRUE(wait_until([&] { return read_or_error(first->inside("/data/secret.txt")) == "alpha's secret\n"; }, 10s))
      << read_or_error(first->inside("/data/secret.txt"));
  EXPECT_TRUE(wait_until([&] { return count(log(), "re-attached 1 container mount set(s)") == 1; }, 10s)) << log();

  // Down again; the process goes, and a process in another namespace gets its pid.
  ASSERT_EQ(daemon_->stop(SIGTERM), 0);
  first.reset();
  auto newcomer = sleeper_with_pid(pid, in_root(dir_ / "rootfs-newcomer"));
  ASSERT_NE(newcomer, nullptr) << "no process got pid " << pid << " again in 100 tries";
  ASSERT_NE(newcomer->identity(), recorded);

  ASSERT_NO_FATAL_FAILURE(start());
  const std::string forgotten = "portalfs[info]: forgetting the attachment of alpha to pid " + p + ": pid " + p +
                                " is another process now (started at tick ";
  // status waits for the heal (it holds the manager's lock): once it says 0, the heal is over.
  const bool healed = wait_until(
      [&] {
        return count(log(), forgotten) == 1 &&
               ctl({"status"}).out.find("attachments: 0\n") != std::string::npos;
      },
      10s);
  EXPECT_TRUE(healed) << log();
  EXPECT_FALSE(exists(newcomer->inside("/data/secret.txt"))) << read_or_error(newcomer->inside("/data/secret.txt"));
  EXPECT_TRUE(newcomer->mounts_at("/data").empty());
  EXPECT_EQ(count(log(), "re-attached"), 1u);  // the first restart's only
  EXPECT_TRUE(state().attachments.empty());
}

// detach of the record while a newcomer has the pid: the record is forgotten, and the
// newcomer's own mount at /data stays.
TEST_F(AttachRecycledPid, DetachLeavesTheNewcomersOwnMountAlone) {
  auto first = std::make_unique<Sleeper>(in_root(dir_ / "rootfs-first"));
  ASSERT_TRUE(first->ready());
  const int pid = first->pid();
  const std::string p = std::to_string(pid);
  auto r = ctl({"attach", "alpha", "--pid", p});
  ASSERT_EQ(r.code, 0) << r.err;
  first.reset();
  auto newcomer = sleeper_with_pid(pid, in_root(dir_ / "rootfs-newcomer", dir_ / "rootfs-newcomer/data"));
  ASSERT_NE(newcomer, nullptr) << "no process got pid " << pid << " again in 100 tries";
  write_file(newcomer->inside("/data/mine"), "the newcomer's own\n");

  r = ctl({"detach", "alpha", "--pid", p});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("forgot the attachment of app alpha to pid " + p +
                               " without touching any mount: pid " + p + " is another process now"));
  ASSERT_EQ(newcomer->mounts_at("/data").size(), 1u);
  EXPECT_THAT(newcomer->mounts_at("/data")[0], HasSubstr(" - tmpfs "));
  EXPECT_EQ(read_file(newcomer->inside("/data/mine")), "the newcomer's own\n");
  EXPECT_TRUE(state().attachments.empty());
}

}  // namespace
}  // namespace portalfs::mountmgr
