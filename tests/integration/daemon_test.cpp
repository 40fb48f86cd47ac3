// SPDX-License-Identifier: MIT
// The real portalfsd binary, driven with the real portalctl: start, serve an installed app,
// stop cleanly on SIGTERM, heal after kill -9, and refuse to start with one clear line.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <fcntl.h>
#include <sys/inotify.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>

#include <nlohmann/json.hpp>

#include "tests/testutil/daemon_fixture.hpp"

namespace portalfs::testutil {
namespace {

using ::testing::HasSubstr;
using namespace std::chrono_literals;

class Daemon : public DaemonFixture {
 protected:
  void SetUp() override {
    DaemonFixture::SetUp();
    write_file(dir_ / "app.json", R"({"name": "demo", "v": "1.0",
      "data_dirs": [{"path": "/data", "uid": 1000, "gid": 1000}],
      "shared_dirs": [{"name": "own_media", "path": "/media", "access": "read"}]})");
  }
};

TEST_F(Daemon, ServesAnInstalledAppAndStopsCleanly) {
  ASSERT_NO_FATAL_FAILURE(start());
  auto r = ctl({"app", "install", dir_ / "app.json"});
  ASSERT_EQ(r.code, 0) << r.err;
  std::string view = mnt() + "/apps/demo/data/data";
  struct stat st {};
  ASSERT_EQ(::stat(view.c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 1000u);  // provisioned for the app's user, presented as is
  write_file(view + "/note.txt", "kept\n");
  EXPECT_EQ(read_file(dir_ / "storage/apps/demo/data/note.txt"), "kept\n");
  // The read-only share refuses writes.
  errno = 0;
  EXPECT_EQ(::mkdir((mnt() + "/apps/demo/shared/own_media/x").c_str(), 0755), -1);
  EXPECT_EQ(errno, EROFS);

  EXPECT_EQ(daemon_->stop(SIGTERM), 0);
  EXPECT_FALSE(mounted(mnt()));
}

// libfuse 3.14's loop checks its exit flag, then waits on a semaphore only a finishing worker
// posts. A stop signal handled on some other thread (seen once in twenty runs: the notifier
// took it), or on the loop's own thread between the check and the wait (under load), set the
// flag and woke nobody, and the daemon served on. So every thread blocks the stop signals and
// one thread waits for them (sigwait), then wakes the loop until it has returned.
TEST_F(Daemon, EveryThreadBlocksTheStopSignalsAndOneWaitsForThem) {
  ASSERT_NO_FATAL_FAILURE(start());
  ASSERT_EQ(ctl({"app", "install", dir_ / "app.json"}).code, 0);
  write_file(mnt() + "/apps/demo/data/data/x", "x");  // workers, passthrough, the notifier
  const std::string tasks = "/proc/" + std::to_string(daemon_->pid()) + "/task";
  const auto field = [&](const std::string& tid, const std::string& name) {
    std::ifstream in(tasks + "/" + tid + "/" + name);
    std::string line;
    std::getline(in, line);
    return line;
  };
  const auto blocked = [&](const std::string& tid) {
    std::ifstream in(tasks + "/" + tid + "/status");
    std::string line;
    while (std::getline(in, line)) {
      if (line.rfind("SigBlk:", 0) == 0) return std::stoull(line.substr(7), nullptr, 16);
    }
    return 0ULL;
  };
  int threads = 0, waiting = 0;
  for (const auto& e : std::filesystem::directory_iterator(tasks)) {
    const std::string tid = e.path().filename();
    ++threads;
    // sigwait unblocks what it waits for while it waits (do_sigtimedwait).
    if (field(tid, "wchan").rfind("do_sigtimedwait", 0) == 0) {
      ++waiting;
      continue;
    }
    const unsigned long long mask = blocked(tid);
    for (int sig : {SIGTERM, SIGINT, SIGHUP, SIGQUIT}) {
      EXPECT_NE(mask & (1ULL << (sig - 1)), 0u) << "thread " << tid << " takes signal " << sig;
    }
  }
  EXPECT_GE(threads, 4);  // the workers and the daemon's own threads were looked at
  EXPECT_EQ(waiting, 1) << "threads waiting for a signal";
  EXPECT_EQ(daemon_->stop(SIGTERM), 0);
  EXPECT_FALSE(mounted(mnt()));
}

// FUSE clears SB_NOSEC unless the daemon takes FUSE_HANDLE_KILLPRIV_V2: then the kernel asks
// for security.capability (a GETXATTR round trip) before every write, passed-through ones
// included. With it, a file is asked about once; libfuse's debug log counts the requests.
TEST_F(Daemon, WritesDoNotAskForCapabilitiesEachTime) {
  extra_daemon_args_ = {"--log-level", "debug"};
  ASSERT_NO_FATAL_FAILURE(start());
  ASSERT_EQ(ctl({"app", "install", dir_ / "app.json"}).code, 0);
  const auto getxattrs = [&] {
    const std::string log = read_file(dir_ / "daemon.log");
    size_t n = 0;
    for (size_t at = log.find("opcode: GETXATTR"); at != std::string::npos; at = log.find("opcode: GETXATTR", at + 1)) ++n;
    return n;
  };
  const std::string file = mnt() + "/apps/demo/data/data/f";
  const int fd = ::open(file.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
  ASSERT_GE(fd, 0) << std::strerror(errno);
  const size_t before = getxattrs();
  for (int i = 0; i < 100; ++i) ASSERT_EQ(::pwrite(fd, "x", 1, i), 1);
  ::close(fd);
  EXPECT_LE(getxattrs() - before, 1u) << "GETXATTR requests for 100 writes";
  EXPECT_EQ(read_file(dir_ / "storage/apps/demo/data/f").size(), 100u);
}

// A portalfsd that stops answering (stopped here; in life, killed while one of its threads
// waits on its own mount: fuse/session_io.hpp) has its connection ended by the kernel once a
// request waits longer than --request-timeout: callers get an error instead of hanging forever.
TEST_F(Daemon, AMountWhoseDaemonStopsAnsweringIsEndedAfterTheRequestTimeout) {
  extra_daemon_args_ = {"--request-timeout", "1"};
  ASSERT_NO_FATAL_FAILURE(start());
  auto r = ctl({"--format", "json", "status"});
  ASSERT_EQ(r.code, 0) << r.err;
  ASSERT_EQ(nlohmann::json::parse(r.out)["filesystem"]["request_timeout"], 1)
      << "this kernel took no request timeout (FUSE_REQUEST_TIMEOUT, Linux 6.14+)";

  ASSERT_EQ(::kill(daemon_->pid(), SIGSTOP), 0);
  // SIGSTOP stops each thread when it next returns to user space: a worker already running
  // could still read and answer the LOOKUP below (seen under load: ENOENT at once, and the
  // daemon served on). Wait until every thread shows it is stopped (state T).
  const std::string tasks = "/proc/" + std::to_string(daemon_->pid()) + "/task";
  const auto all_stopped = [&] {
    for (const auto& e : std::filesystem::directory_iterator(tasks)) {
      std::ifstream in(e.path() / "stat");
      std::string stat;
      std::getline(in, stat);
      const auto close = stat.rfind(')');  // the state follows the command's closing parenthesis
      if (close == std::string::npos || close + 2 >= stat.size() || stat[close + 2] != 'T') return false;
    }
    return true;
  };
  ASSERT_TRUE(wait_until(all_stopped, 10s)) << "portalfsd's threads did not all stop";
  int report[2];
  ASSERT_EQ(::pipe(report), 0);
  const pid_t caller = ::fork();
  ASSERT_GE(caller, 0);
  if (caller == 0) {  // a LOOKUP nobody will answer
    struct stat st {};
    int err = ::stat((mnt() + "/no-such-name").c_str(), &st) == 0 ? 0 : errno;
    (void)!::write(report[1], &err, sizeof err);
    ::_exit(0);
  }
  ::close(report[1]);
  int status = 0;
  // The kernel looks for expired requests every 15 s.
  const bool returned = wait_until([&] { return ::waitpid(caller, &status, WNOHANG) == caller; }, 90s);
  int err = -1;
  if (returned) {
    EXPECT_EQ(::read(report[0], &err, sizeof err), static_cast<ssize_t>(sizeof err));
  }
  ::close(report[0]);
  ::kill(daemon_->pid(), SIGCONT);
  if (!returned) {
    ::kill(caller, SIGKILL);
    FAIL() << "a request to a stopped portalfsd still hangs after 90 s";
  }
  EXPECT_THAT(err, ::testing::AnyOf(ECONNABORTED, ENOTCONN)) << std::strerror(err);
  // The daemon, woken, finds its connection gone and ends.
  EXPECT_NE(daemon_->wait(30s), -1);
}

// A daemon killed while its notifier waits on the mount for an echo dies at once: its guardian
// aborts the connection (fuse/guardian.hpp). Without one, the notifier's thread waited for an
// answer no worker would give, the daemon stayed a zombie holding the mount, and the apps'
// requests hung with it until the request timeout. Each round kills it during a burst of echoes.
TEST_F(Daemon, KilledWhileEchoingChangesDiesAndEndsItsMountAtOnce) {
  extra_daemon_args_ = {"--events", "on"};
  write_app("alpha", {{"music", "read-write"}});
  write_app("beta", {{"music", "read-write"}});
  for (int round = 0; round < 3; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    ASSERT_NO_FATAL_FAILURE(start());
    if (round == 0) {
      ASSERT_EQ(ctl({"share", "create", "music"}).code, 0);
      ASSERT_NO_FATAL_FAILURE(install_apps({"alpha", "beta"}));
    }
    const std::string alpha = mnt() + "/apps/alpha/shared/music", beta = mnt() + "/apps/beta/shared/music";
    const int watch = ::inotify_init1(IN_CLOEXEC);
    ASSERT_GE(watch, 0) << std::strerror(errno);
    ASSERT_GE(::inotify_add_watch(watch, beta.c_str(), IN_CREATE), 0) << std::strerror(errno);
    // alpha's churn, in a process of its own: creates and removes until the mount fails it.
    const pid_t churn = ::fork();
    ASSERT_GE(churn, 0);
    if (churn == 0) {
      for (unsigned i = 0;; ++i) {
        const std::string name = alpha + "/f" + std::to_string(i % 64);
        const int fd = ::open(name.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
        if (fd < 0) ::_exit(0);
        ::close(fd);
        if (::unlink(name.c_str()) != 0) ::_exit(0);
      }
    }
    // beta hears them: the echoes run.
    size_t heard = 0;
    char buf[4096];
    while (heard < 200) {
      const ssize_t n = ::read(watch, buf, sizeof buf);
      ASSERT_GT(n, 0) << std::strerror(errno);
      for (ssize_t off = 0; off < n;) {
        off += static_cast<ssize_t>(sizeof(inotify_event) + reinterpret_cast<inotify_event*>(buf + off)->len);
        ++heard;
      }
    }
    const int rc = daemon_->stop(SIGKILL, 5s);
    if (rc < 0) abort_connection_at(mnt());  // fail, don't hang the rest of the suite
    EXPECT_EQ(rc, 128 + SIGKILL) << "portalfsd did not die within 5 s of SIGKILL";
    int status = 0;
    const bool churn_ended = wait_until([&] { return ::waitpid(churn, &status, WNOHANG) == churn; }, 5s);
    if (!churn_ended) {
      abort_connection_at(mnt());
      ::waitpid(churn, &status, 0);
    }
    EXPECT_TRUE(churn_ended) << "alpha's request still hung 5 s after the daemon died";
    ::close(watch);
    if (HasFailure()) return;
  }
}

// The background daemon started with this test's socket: of the processes whose command line
// names it, the one whose parent is none of them (-1 if none). Its guardian (fuse/guardian.hpp)
// has the same command line and is its child; it renames itself, but only once it runs, and a
// guardian picked in that window took the test's SIGTERM (it blocks every signal) while the
// daemon served on. Killed by pid when the test ends early.
pid_t background_daemon(const std::string& sock) {
  std::map<pid_t, pid_t> parent_of;
  for (const auto& e : std::filesystem::directory_iterator("/proc")) {
    const std::string name = e.path().filename();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream in(e.path() / "cmdline", std::ios::binary);
    if (!in) continue;  // the process ended since the listing (other tests run alongside)
    const std::string cmdline((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (cmdline.find(sock) == std::string::npos || cmdline.find("portalfsd") == std::string::npos) continue;
    std::ifstream status(e.path() / "status");
    std::string line;
    while (std::getline(status, line)) {
      if (line.rfind("PPid:", 0) == 0) parent_of[std::stoi(name)] = std::stoi(line.substr(5));
    }
  }
  for (const auto& [pid, parent] : parent_of) {
    if (!parent_of.contains(parent)) return pid;
  }
  return -1;
}

struct KillOnExit {
  pid_t pid;
  ~KillOnExit() {
    if (pid > 0 && ::kill(pid, 0) == 0) ::kill(pid, SIGKILL);
  }
};

// Without --foreground portalfsd forks after mounting (the parent exits 0) and must still
// stop cleanly: no thread of the parent may be expected in the child.
TEST_F(Daemon, InTheBackgroundStopsCleanlyOnSigterm) {
  auto argv = daemon_argv();
  argv.erase(std::remove(argv.begin(), argv.end(), std::string("--foreground")), argv.end());
  Child parent(argv, dir_ / "daemon.log");
  ASSERT_EQ(parent.wait(10s), 0) << read_file(dir_ / "daemon.log");
  ASSERT_TRUE(wait_until([&] { return ctl({"status"}).code == 0; }, 10s));
  const pid_t pid = background_daemon(sock());
  ASSERT_GT(pid, 0) << "no background portalfsd found";
  KillOnExit reaper{pid};
  ASSERT_EQ(::kill(pid, SIGTERM), 0);
  EXPECT_TRUE(wait_until([&] { return ::kill(pid, 0) != 0; }, 10s)) << "it did not exit";
  EXPECT_FALSE(mounted(mnt())) << "the mount was left behind";
}

// A purge recorded before a crash is carried out at the next start, which forks: the worker
// that empties the trash must start in the child, not in the parent that exits.
TEST_F(Daemon, InTheBackgroundFinishesARecordedPurgeAndStopsCleanly) {
  ASSERT_NO_FATAL_FAILURE(start());
  ASSERT_EQ(ctl({"app", "install", dir_ / "app.json"}).code, 0);
  for (int i = 0; i < 100; ++i) std::filesystem::create_directories(storage() + "/apps/demo/data/d" + std::to_string(i) + "/x");
  ASSERT_EQ(daemon_->stop(SIGKILL), 128 + SIGKILL);
  ::umount2(mnt().c_str(), MNT_DETACH);
  // What a crash between saving the purge and carrying it out leaves.
  auto state = nlohmann::json::parse(read_file(dir_ / "state/state.json"));
  // The install is in state.journal (a kill -9 folds nothing in); a document without
  // journal_seq stands alone, as an edited one should.
  state.erase("journal_seq");
  state["apps"].erase("demo");
  state["removals"] = {"apps/demo"};
  write_file(dir_ / "state/state.json", state.dump());

  auto argv = daemon_argv();
  argv.erase(std::remove(argv.begin(), argv.end(), std::string("--foreground")), argv.end());
  Child parent(argv, dir_ / "daemon.log");
  ASSERT_EQ(parent.wait(10s), 0) << read_file(dir_ / "daemon.log");
  const pid_t pid = background_daemon(sock());
  ASSERT_GT(pid, 0) << "no background portalfsd found";
  KillOnExit reaper{pid};
  EXPECT_FALSE(std::filesystem::exists(storage() + "/apps/demo"));
  EXPECT_TRUE(wait_until([&] { return std::filesystem::is_empty(storage() + "/trash"); }, 30s));
  EXPECT_EQ(read_file(dir_ / "state/state.json").find("removals"), std::string::npos);
  ASSERT_EQ(::kill(pid, SIGTERM), 0);
  EXPECT_TRUE(wait_until([&] { return ::kill(pid, 0) != 0; }, 10s)) << "it did not exit";
  EXPECT_FALSE(mounted(mnt()));
}

TEST_F(Daemon, RestartsOverTheDeadMountOfACrashedDaemon) {
  ASSERT_NO_FATAL_FAILURE(start());
  ASSERT_EQ(ctl({"app", "install", dir_ / "app.json"}).code, 0);
  write_file(mnt() + "/apps/demo/data/data/before.txt", "x");
  EXPECT_EQ(daemon_->stop(SIGKILL), 128 + SIGKILL);
  struct statfs sf {};
  EXPECT_EQ(::statfs(mnt().c_str(), &sf), -1);
  EXPECT_EQ(errno, ENOTCONN);  // the dead connection a crash leaves

  ASSERT_NO_FATAL_FAILURE(start());
  EXPECT_EQ(read_file(mnt() + "/apps/demo/data/data/before.txt"), "x");  // state and data kept
}

TEST_F(Daemon, RefusesASecondDaemonOnTheSameMountpoint) {
  ASSERT_NO_FATAL_FAILURE(start());
  auto argv = daemon_argv();
  argv.back() = dir_ / "other.sock";
  auto r = run_command(argv, 10s);
  EXPECT_NE(r.code, 0);
  EXPECT_THAT(r.err, HasSubstr("already serves " + mnt()));
  EXPECT_TRUE(mounted(mnt()));
}

TEST_F(Daemon, RefusesAStorageRootThatIsAFile) {
  write_file(dir_ / "storage", "not a directory");
  auto r = run_command(daemon_argv(), 10s);
  EXPECT_EQ(r.code, 2);
  EXPECT_EQ(r.err, "portalfsd: storage root " + (dir_ / "storage") + " is not a directory\n");
  EXPECT_FALSE(mounted(mnt()));
}

TEST_F(Daemon, RefusesAMountpointBusyWithAnotherMount) {
  std::filesystem::create_directories(mnt());
  ASSERT_EQ(::mount("tmpfs", mnt().c_str(), "tmpfs", 0, "size=1m"), 0);
  auto r = run_command(daemon_argv(), 10s);
  ::umount2(mnt().c_str(), MNT_DETACH);
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("is busy with another mount"));
}

TEST_F(Daemon, RefusesACorruptStateFileWithOneLine) {
  write_file(dir_ / "state/state.json", "{\"schema_version\": 1, \"apps\": {");  // torn
  auto r = run_command(daemon_argv(), 10s);
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("state.json"));
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_EQ(read_file(dir_ / "state/state.json"), "{\"schema_version\": 1, \"apps\": {");
  EXPECT_FALSE(mounted(mnt()));
}

TEST_F(Daemon, RevokeTakesEffectOnTheMountAtOnce) {
  ASSERT_NO_FATAL_FAILURE(start());
  ASSERT_EQ(ctl({"app", "install", dir_ / "app.json"}).code, 0);
  ASSERT_EQ(ctl({"grant", "demo", "own_documents", "read-write", "--path", "/documents"}).code, 0);
  std::string docs = mnt() + "/apps/demo/shared/own_documents";
  write_file(docs + "/a.txt", "a");
  ASSERT_EQ(ctl({"revoke", "demo", "own_documents"}).code, 0);
  errno = 0;
  EXPECT_EQ(::open((docs + "/a.txt").c_str(), O_RDONLY), -1);
  EXPECT_EQ(errno, ENOENT);
  ASSERT_EQ(ctl({"grant", "demo", "own_documents", "read", "--path", "/documents"}).code, 0);
  EXPECT_EQ(read_file(docs + "/a.txt"), "a");
  errno = 0;
  EXPECT_EQ(::open((docs + "/a.txt").c_str(), O_WRONLY), -1);
  EXPECT_EQ(errno, EROFS);  // downgraded to read
}

}  // namespace
}  // namespace portalfs::testutil
