// SPDX-License-Identifier: MIT
// Faults (issue #5) against the real portalfsd: kill -9 under a client that appends and
// fsyncs records from inside a "container"; kill -9 in a burst of grants; a truncated, garbage
// or unreadable state file; a full backing file system; a daemon out of file descriptors.
#include <dirent.h>
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/unique_fd.hpp"
#include "tests/testutil/daemon_fixture.hpp"

namespace portalfs::testutil {
namespace {

using ::testing::HasSubstr;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

constexpr const char* kApp = R"({"name": "demo", "v": "1.0",
  "data_dirs": [{"path": "/data", "uid": 1000, "gid": 1000}]})";

// ---- helpers -------------------------------------------------------------------------------

/// Record n of the append log: 64 bytes, "record 0000000042 ......\n".
constexpr size_t kRecord = 64;
std::string record(uint32_t n) {
  char buf[kRecord + 1];
  std::snprintf(buf, sizeof buf, "record %010u ", n);
  std::string s(buf);
  s.resize(kRecord - 1, '.');
  return s + "\n";
}

/// A process's open fds, without pipes: libfuse gives each worker thread a splice pipe pair
/// when it first needs one and keeps it for the thread's life, so pipes follow the thread
/// count, not what the filesystem holds.
int count_fds(pid_t pid) {
  int n = 0;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator("/proc/" + std::to_string(pid) + "/fd", ec)) {
    if (!fs::read_symlink(e.path(), ec).string().starts_with("pipe:")) ++n;
  }
  return n;
}

/// What a process's fds point at, one per line (for failure messages).
std::string fd_listing(pid_t pid) {
  std::string out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator("/proc/" + std::to_string(pid) + "/fd", ec)) {
    out += e.path().filename().string() + " -> " + fs::read_symlink(e.path(), ec).string() + "\n";
  }
  return out;
}

/// Makes the kernel forget what it cached of the mount (FORGETs reach the daemon).
void drop_caches() { write_file("/proc/sys/vm/drop_caches", "2\n"); }

/// An app's shared grants as `portalctl app show` prints them: share -> "access path".
using Grants = std::map<std::string, std::string>;
Grants grants_of(const std::string& show_text) {
  Grants out;
  std::istringstream in(show_text);
  for (std::string line; std::getline(in, line);) {
    // grant: share burst1 at /b1 (read-write)
    const std::string head = "grant: share ";
    if (line.rfind(head, 0) != 0) continue;
    std::istringstream words(line.substr(head.size()));
    std::string share, at, path, access;
    words >> share >> at >> path >> access;
    access.erase(0, 1);
    access.erase(access.find_first_of(",)"));
    out[share] = access + " " + path;
  }
  return out;
}

std::string describe(const Grants& g) {
  std::string s;
  for (const auto& [share, what] : g) s += share + "=" + what + "; ";
  return s.empty() ? "(none)" : s;
}

class Fault : public DaemonFixture {
 protected:
  void SetUp() override {
    DaemonFixture::SetUp();
    if (HasFatalFailure() || IsSkipped()) return;
    write_file(dir_ / "app.json", kApp);
  }
  void install() {
    auto r = ctl({"app", "install", dir_ / "app.json"});
    ASSERT_EQ(r.code, 0) << r.err;
  }
  /// Starts portalfsd with `prefix` before it and `extra` arguments after it.
  void start_with(std::vector<std::string> prefix, const std::vector<std::string>& extra = {}) {
    auto argv = daemon_argv();
    argv.insert(argv.end(), extra.begin(), extra.end());
    prefix.insert(prefix.end(), argv.begin(), argv.end());
    daemon_ = std::make_unique<Child>(prefix, dir_ / "daemon.log");
    bool up = wait_until([&] { return ctl({"status"}).code == 0; }, 10s);
    ASSERT_TRUE(up) << "portalfsd did not come up:\n" << read_file(dir_ / "daemon.log");
  }
  std::string data_view() const { return mnt() + "/apps/demo/data/data"; }
  std::string data_backing() const { return storage() + "/apps/demo/data"; }
};

// ---- kill -9 under an appending, fsyncing client -------------------------------------------

/// A process in its own mount namespace whose root is an empty tmpfs (a stand-in for a
/// container: the daemon attaches the app's views into it). It appends records to /data/log
/// with write + fsync and reports every acknowledged record number through a pipe; when a
/// write fails it reports the errno and waits for "continue", then re-opens the log and goes
/// on from the last whole record for `more` records.
class AppendingContainer {
 public:
  static constexpr uint32_t kFailed = 0xFFFFFFFF;  // followed by the errno
  static constexpr uint32_t kDone = 0xFFFFFFFE;

  AppendingContainer(const std::string& root, uint32_t more) {
    int up[2], down[2];
    if (::pipe2(up, O_CLOEXEC) != 0 || ::pipe2(down, O_CLOEXEC) != 0) return;
    pid_ = ::fork();
    if (pid_ == 0) {
      ::close(up[0]);
      ::close(down[1]);
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      child(root.c_str(), up[1], down[0], more);
    }
    ::close(up[1]);
    ::close(down[0]);
    from_.reset(up[0]);
    to_.reset(down[1]);
  }
  ~AppendingContainer() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  [[nodiscard]] pid_t pid() const { return pid_; }
  /// The next word from the container (false at EOF).
  bool next(uint32_t& word) {
    return ::read(from_.get(), &word, sizeof word) == static_cast<ssize_t>(sizeof word);
  }
  void tell(char c) { (void)!::write(to_.get(), &c, 1); }
  int wait_exit() {
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }

 private:
  // Only syscalls from here on (the test process is single-threaded when it forks).
  [[noreturn]] static void child(const char* root, int up, int down, uint32_t more) {
    auto say = [&](uint32_t w) { (void)!::write(up, &w, sizeof w); };
    auto fail = [&](int err) {
      say(kFailed);
      say(static_cast<uint32_t>(err));
      ::_exit(1);
    };
    if (::unshare(CLONE_NEWNS) != 0) fail(errno);
    if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) fail(errno);
    if (::mount("tmpfs", root, "tmpfs", 0, "size=1m,mode=0755") != 0) fail(errno);
    std::string old = std::string(root) + "/old";
    if (::mkdir(old.c_str(), 0700) != 0) fail(errno);
    if (::syscall(SYS_pivot_root, root, old.c_str()) != 0) fail(errno);
    if (::chdir("/") != 0 || ::umount2("/old", MNT_DETACH) != 0) fail(errno);
    say(0);  // ready to be attached
    char go = 0;
    if (::read(down, &go, 1) != 1) ::_exit(1);

    uint32_t n = 0;
    auto append = [&](int fd, uint32_t upto) {
      for (; n < upto; ++n) {
        std::string r = record(n);
        if (::write(fd, r.data(), r.size()) != static_cast<ssize_t>(r.size())) return errno ? errno : EIO;
        if (::fsync(fd) != 0) return errno;
        say(n);
      }
      return 0;
    };
    int fd = ::open("/data/log", O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) fail(errno);
    int err = append(fd, 1u << 30);  // until the daemon dies under it
    ::close(fd);
    say(kFailed);
    say(static_cast<uint32_t>(err));
    if (::read(down, &go, 1) != 1) ::_exit(1);

    // Continue after the last whole record on disk (the one in flight may have landed).
    fd = ::open("/data/log", O_WRONLY | O_APPEND | O_CLOEXEC);
    if (fd < 0) fail(errno);
    struct stat st {};
    if (::fstat(fd, &st) != 0) fail(errno);
    if (st.st_size % kRecord != 0) fail(EBADMSG);
    n = static_cast<uint32_t>(st.st_size / kRecord);
    if (int e = append(fd, n + more); e != 0) fail(e);
    if (::close(fd) != 0) fail(errno);
    say(kDone);
    ::_exit(0);
  }

  pid_t pid_ = -1;
  common::UniqueFd from_, to_;
};

TEST_F(Fault, KillDuringFsyncedAppendsKeepsEveryAcknowledgedRecordAndTheClientContinues) {
  ASSERT_NO_FATAL_FAILURE(start());
  ASSERT_NO_FATAL_FAILURE(install());
  fs::create_directories(dir_ / "ctr");
  AppendingContainer client(dir_ / "ctr", 100);
  uint32_t word = 1;
  ASSERT_TRUE(client.next(word) && word == 0) << "the container did not come up";
  auto r = ctl({"attach", "demo", "--pid", std::to_string(client.pid())});
  ASSERT_EQ(r.code, 0) << r.err;
  client.tell('g');

  // Let it get going, then kill the daemon while it writes and fsyncs.
  int64_t last_acked = -1;
  while (last_acked < 300 && client.next(word) && word != AppendingContainer::kFailed) last_acked = word;
  ASSERT_EQ(last_acked, 300) << "the client stopped early (word " << word << ")";
  EXPECT_EQ(daemon_->stop(SIGKILL), 128 + SIGKILL);
  uint32_t err = 0;
  while (client.next(word) && word != AppendingContainer::kFailed) last_acked = word;
  ASSERT_EQ(word, AppendingContainer::kFailed);
  ASSERT_TRUE(client.next(err));
  // ENOTCONN for a request made after the connection died, ECONNABORTED for one it was
  // waiting on (the writes pass through to the backing file; the fsyncs reach the daemon).
  EXPECT_TRUE(err == ENOTCONN || err == ECONNABORTED) << std::strerror(static_cast<int>(err));

  // On the backing file: records 0..last_acked, in order; after them at most a prefix of the
  // records that were in flight.
  std::string disk = read_file(data_backing() + "/log");
  const size_t acked_bytes = static_cast<size_t>(last_acked + 1) * kRecord;
  ASSERT_GE(disk.size(), acked_bytes) << "acknowledged records are missing";
  for (uint32_t n = 0; n <= last_acked; ++n) {
    ASSERT_EQ(disk.substr(n * kRecord, kRecord), record(n)) << "record " << n;
  }
  std::string tail;
  for (uint32_t n = static_cast<uint32_t>(last_acked + 1); tail.size() < disk.size() - acked_bytes; ++n) tail += record(n);
  EXPECT_EQ(disk.substr(acked_bytes), tail.substr(0, disk.size() - acked_bytes)) << "garbage after the acknowledged records";

  // Restart: the dead mount is cleared, the views come back and the attachment is healed.
  ASSERT_NO_FATAL_FAILURE(start());
  const std::string in_ctr = "/proc/" + std::to_string(client.pid()) + "/root/data";
  ASSERT_TRUE(wait_until([&] {
    struct statvfs sv {};
    return ::statvfs(in_ctr.c_str(), &sv) == 0;
  }, 10s)) << "the container's /data did not come back: " << std::strerror(errno);
  client.tell('c');
  while (client.next(word) && word != AppendingContainer::kDone && word != AppendingContainer::kFailed) {
  }
  if (word == AppendingContainer::kFailed && client.next(err)) FAIL() << "continuing: " << std::strerror(static_cast<int>(err));
  ASSERT_EQ(word, AppendingContainer::kDone);
  EXPECT_EQ(client.wait_exit(), 0);

  disk = read_file(data_backing() + "/log");
  ASSERT_EQ(disk.size() % kRecord, 0u);
  ASSERT_GE(disk.size(), acked_bytes + 100 * kRecord);
  for (uint32_t n = 0; n < disk.size() / kRecord; ++n) {
    ASSERT_EQ(disk.substr(n * kRecord, kRecord), record(n)) << "record " << n;
  }
  EXPECT_EQ(read_file(data_view() + "/log"), disk);
}

// ---- the state file ------------------------------------------------------------------------

TEST_F(Fault, KillDuringAGrantBurstKeepsEveryAcknowledgedGrantAndWidensNone) {
  ASSERT_NO_FATAL_FAILURE(start());
  ASSERT_NO_FATAL_FAILURE(install());
  constexpr int kShares = 4;
  for (int k = 0; k < kShares; ++k) {
    ASSERT_EQ(ctl({"share", "create", "burst" + std::to_string(k)}).code, 0);
  }

  // The i-th command of the burst: a grant (read or read-write) or a revoke of burst<i%4>.
  auto command = [&](int i, const Grants& model, Grants& after) {
    const std::string share = "burst" + std::to_string(i % kShares);
    const std::string path = "/b" + std::to_string(i % kShares);
    after = model;
    if (model.contains(share) && (i / kShares) % 3 == 2) {
      after.erase(share);
      return std::vector<std::string>{"revoke", "demo", share};
    }
    const std::string access = (i / kShares) % 2 ? "read-write" : "read";
    after[share] = access + " " + path;
    return std::vector<std::string>{"grant", "demo", share, access, "--path", path};
  };
  Grants acked, in_flight;
  std::atomic<int> done{0};
  std::string stop_reason;
  std::thread burst([&] {
    for (int i = 0;; ++i) {
      Grants after;
      auto args = command(i, acked, after);
      in_flight = after;
      auto r = ctl(args);
      if (r.code != 0) {
        stop_reason = r.err;
        return;
      }
      acked = after;
      done.store(i + 1);
    }
  });
  wait_until([&] { return done.load() >= 40; }, 60s);
  EXPECT_EQ(daemon_->stop(SIGKILL), 128 + SIGKILL);
  burst.join();
  ASSERT_GE(done.load(), 40) << stop_reason;

  // The state is the last acknowledged one, or that plus the command in flight: never
  // anything else.
  ASSERT_NO_FATAL_FAILURE(start());
  auto r = ctl({"app", "show", "demo"});
  ASSERT_EQ(r.code, 0) << r.err;
  Grants now = grants_of(r.out);
  EXPECT_TRUE(now == acked || now == in_flight)
      << "after " << done.load() << " acknowledged commands\n  on restart: " << describe(now)
      << "\n  acknowledged: " << describe(acked) << "\n  in flight: " << describe(in_flight);
  // And the mount enforces it.
  for (int k = 0; k < kShares; ++k) {
    const std::string share = "burst" + std::to_string(k);
    const std::string probe = mnt() + "/apps/demo/shared/" + share + "/probe";
    errno = 0;
    int rc = ::mkdir(probe.c_str(), 0755);
    int expect = !now.contains(share) ? ENOENT : now[share].rfind("read-write", 0) == 0 ? 0 : EROFS;
    EXPECT_EQ(rc == 0 ? 0 : errno, expect) << share;
    if (rc == 0) ::rmdir(probe.c_str());
  }
}

/// A daemon with a few grants, stopped: state.json holds {own_documents, burst0} and
/// state.json.bak the state before burst0 was granted.
class BadStateFile : public Fault {
 protected:
  void SetUp() override {
    Fault::SetUp();
    if (HasFatalFailure() || IsSkipped()) return;
    ASSERT_NO_FATAL_FAILURE(start());
    ASSERT_NO_FATAL_FAILURE(install());
    ASSERT_EQ(ctl({"share", "create", "burst0"}).code, 0);
    ASSERT_EQ(ctl({"grant", "demo", "own_documents", "read", "--path", "/docs"}).code, 0);
    ASSERT_EQ(ctl({"grant", "demo", "burst0", "read-write", "--path", "/b0"}).code, 0);
    ASSERT_EQ(daemon_->stop(SIGTERM), 0);
    state_ = dir_ / "state/state.json";
    ASSERT_TRUE(fs::exists(state_ + ".bak"));
  }

  /// Starting refuses with one line that says what to do, exit code 2, the file untouched and
  /// nothing mounted; `--recover-from-backup` then starts from the .bak (keeping the bad file
  /// as state.json.corrupt) and the journal after it, which have every grant, each as it was.
  void expect_refusal_then_recovery(const std::vector<std::string>& prefix, const std::string& problem) {
    const std::string bad = read_file(state_);
    auto argv = prefix;
    auto daemon = daemon_argv();
    argv.insert(argv.end(), daemon.begin(), daemon.end());
    auto r = run_command(argv, 10s);
    EXPECT_EQ(r.code, 2) << r.err;
    EXPECT_THAT(r.err, HasSubstr(state_ + ": " + problem));
    EXPECT_THAT(r.err, HasSubstr("start with --recover-from-backup"));
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_EQ(read_file(state_), bad);
    EXPECT_FALSE(mounted(mnt()));

    ASSERT_NO_FATAL_FAILURE(start_with(prefix, {"--recover-from-backup"}));
    auto show = ctl({"app", "show", "demo"});
    ASSERT_EQ(show.code, 0) << show.err;
    // The .bak and the journal records after it (state.journal.bak): nothing is lost.
    EXPECT_EQ(describe(grants_of(show.out)),
              describe({{"own_documents", "read /docs"}, {"burst0", "read-write /b0"}}));
    EXPECT_EQ(read_file(state_ + ".corrupt"), bad);
    EXPECT_THAT(read_file(dir_ / "daemon.log"), HasSubstr("starting from " + state_ + ".bak"));
    // The recovered state is saved whole by the next change and survives a restart.
    ASSERT_EQ(ctl({"grant", "demo", "burst0", "read", "--path", "/b0"}).code, 0);
    ASSERT_EQ(daemon_->stop(SIGTERM), 0);
    ASSERT_NO_FATAL_FAILURE(start());
    show = ctl({"app", "show", "demo"});
    EXPECT_EQ(describe(grants_of(show.out)), describe({{"own_documents", "read /docs"}, {"burst0", "read /b0"}}));
  }

  std::string state_;
};

TEST_F(BadStateFile, TruncatedInTheMiddle) {
  fs::resize_file(state_, fs::file_size(state_) / 2);
  expect_refusal_then_recovery({}, "is not valid JSON (torn or corrupt)");
}

TEST_F(BadStateFile, TruncatedToNothing) {
  fs::resize_file(state_, 0);
  expect_refusal_then_recovery({}, "is empty (a torn write?)");
}

TEST_F(BadStateFile, FilledWithGarbage) {
  std::string garbage(4096, '\0');
  std::mt19937 rng(5);
  for (auto& c : garbage) c = static_cast<char>(rng());
  write_file(state_, garbage);
  expect_refusal_then_recovery({}, "is not valid JSON (torn or corrupt)");
}

TEST_F(BadStateFile, ValidJsonOfTheWrongShape) {
  write_file(state_, R"({"schema_version": 1, "apps": [1, 2, 3]})");
  expect_refusal_then_recovery({}, "/apps");
}

TEST_F(BadStateFile, Unreadable) {
  // Root reads any file; a daemon without CAP_DAC_OVERRIDE/CAP_DAC_READ_SEARCH does not.
  ASSERT_EQ(::chmod(state_.c_str(), 0), 0);
  expect_refusal_then_recovery({"/usr/bin/setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--"},
                               "cannot open: Permission denied");
}

// ---- the backing file system full ----------------------------------------------------------

class FullDisk : public Fault {
 protected:
  void SetUp() override {
    Fault::SetUp();
    if (HasFatalFailure() || IsSkipped()) return;
    fs::create_directories(storage());
    ASSERT_EQ(::mount("tmpfs", storage().c_str(), "tmpfs", 0, "size=8m,mode=0755"), 0) << std::strerror(errno);
    tmpfs_ = true;
  }
  void TearDown() override {
    Fault::TearDown();
    if (tmpfs_) ::umount2(storage().c_str(), MNT_DETACH);
  }
  bool tmpfs_ = false;
};

std::string pattern(size_t size, unsigned seed) {
  std::string s(size, '\0');
  std::mt19937 rng(seed);
  for (auto& c : s) c = static_cast<char>(rng());
  return s;
}

TEST_F(FullDisk, WritesFailWithEnospcNothingWrittenIsDamagedAndTheDaemonServesOn) {
  ASSERT_NO_FATAL_FAILURE(start());
  ASSERT_NO_FATAL_FAILURE(install());
  const std::string keep = pattern(1 << 20, 1);
  {
    common::UniqueFd fd(::open((data_view() + "/keep.bin").c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    ASSERT_TRUE(fd) << std::strerror(errno);
    ASSERT_EQ(::write(fd.get(), keep.data(), keep.size()), static_cast<ssize_t>(keep.size()));
    ASSERT_EQ(::fsync(fd.get()), 0);
  }

  // Fill it: the error may surface at write, fsync or close (with a write-back cache).
  const std::string chunk = pattern(64 << 10, 2);
  int fd = ::open((data_view() + "/fill.bin").c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  ASSERT_GE(fd, 0) << std::strerror(errno);
  int err = 0;
  size_t written = 0;
  for (int i = 0; i < 1024 && err == 0; ++i) {  // 64 MiB at most, 8x the file system
    ssize_t n = ::write(fd, chunk.data(), chunk.size());
    if (n < 0) err = errno;
    else written += static_cast<size_t>(n);
  }
  if (err == 0 && ::fsync(fd) != 0) err = errno;
  if (::close(fd) != 0 && err == 0) err = errno;
  EXPECT_EQ(err, ENOSPC) << std::strerror(err) << " after " << written << " bytes";
  EXPECT_GT(written, 4u << 20);

  // What was written before is intact, on disk and through the view.
  EXPECT_TRUE(read_file(data_backing() + "/keep.bin") == keep);
  EXPECT_TRUE(read_file(data_view() + "/keep.bin") == keep);
  // A new file cannot get data either; creating the name may or may not succeed on tmpfs.
  errno = 0;
  fd = ::open((data_view() + "/more.bin").c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd >= 0) {
    ssize_t n = ::write(fd, chunk.data(), chunk.size());
    int werr = n < 0 ? errno : 0;
    if (n >= 0 && ::fsync(fd) != 0) werr = errno;
    ::close(fd);
    EXPECT_EQ(werr, ENOSPC);
    ::unlink((data_view() + "/more.bin").c_str());
  } else {
    EXPECT_EQ(errno, ENOSPC);
  }

  // The daemon serves on: stat, read, control socket; an unlink frees the space and writing
  // works again.
  struct stat st {};
  ASSERT_EQ(::stat((data_view() + "/fill.bin").c_str(), &st), 0) << std::strerror(errno);
  EXPECT_EQ(static_cast<size_t>(st.st_size), written);
  EXPECT_EQ(ctl({"status"}).code, 0);
  struct statvfs before {}, after {};
  ASSERT_EQ(::statvfs(data_view().c_str(), &before), 0);
  ASSERT_EQ(::unlink((data_view() + "/fill.bin").c_str()), 0) << std::strerror(errno);
  // The space comes back once the last fd of the file closes: the open file's at RELEASE and
  // the cached O_PATH fd at FORGET, both sent by the kernel after unlink returned.
  EXPECT_TRUE(wait_until([&] {
    return ::statvfs(data_view().c_str(), &after) == 0 && after.f_bavail > before.f_bavail;
  }, 10s)) << after.f_bavail << " blocks free, " << before.f_bavail << " before the unlink";
  const std::string again = pattern(2 << 20, 3);
  write_file(data_view() + "/again.bin", again);
  EXPECT_TRUE(read_file(data_backing() + "/again.bin") == again);
  EXPECT_TRUE(read_file(data_view() + "/keep.bin") == keep);
  EXPECT_FALSE(daemon_->exited());
}

// ---- out of file descriptors ---------------------------------------------------------------

constexpr int kFdLimit = 256;
constexpr int kDirs = 100, kFilesPerDir = 1000;  // 100,000 files

class FewFds : public Fault {
 protected:
  void SetUp() override {
    Fault::SetUp();
    if (HasFatalFailure() || IsSkipped()) return;
    ASSERT_NO_FATAL_FAILURE(start_with({"/usr/bin/prlimit", "--nofile=" + std::to_string(kFdLimit), "--"}));
    ASSERT_NO_FATAL_FAILURE(install());
    // The files, made on the backing directory directly (fast; the view finds them).
    for (int d = 0; d < kDirs; ++d) {
      const std::string dir = data_backing() + "/d" + std::to_string(d);
      ASSERT_EQ(::mkdir(dir.c_str(), 0755), 0);
      for (int f = 0; f < kFilesPerDir; ++f) {
        int fd = ::open((dir + "/f" + std::to_string(f)).c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        ASSERT_GE(fd, 0) << std::strerror(errno);
        ::close(fd);
      }
    }
    baseline_fds_ = count_fds(daemon_->pid());
    baseline_listing_ = fd_listing(daemon_->pid());
  }
  std::string file(int d, int f) const {
    return data_view() + "/d" + std::to_string(d) + "/f" + std::to_string(f);
  }
  /// stat()s every file through the view: errno -> count (0 = success).
  std::map<int, int> stat_all() {
    std::map<int, int> outcome;
    struct stat st {};
    for (int d = 0; d < kDirs; ++d) {
      for (int f = 0; f < kFilesPerDir; ++f) outcome[::stat(file(d, f).c_str(), &st) == 0 ? 0 : errno]++;
    }
    return outcome;
  }
  static std::string describe(const std::map<int, int>& outcome) {
    std::string s;
    for (auto [err, n] : outcome) s += std::string(err ? strerrorname_np(err) : "ok") + ":" + std::to_string(n) + " ";
    return s;
  }
  int baseline_fds_ = 0;
  std::string baseline_listing_;
};

TEST_F(FewFds, CallersGetEmfileTheDaemonRecoversAndNeverCrashes) {
  // 100k lookups: each one succeeds or is refused for want of fds, nothing else.
  auto outcome = stat_all();
  for (auto [err, n] : outcome) {
    EXPECT_TRUE(err == 0 || err == EMFILE || err == ENFILE) << describe(outcome);
  }
  EXPECT_FALSE(daemon_->exited());

  // Open files until the daemon runs out; the callers see EMFILE/ENFILE, not EIO.
  drop_caches();
  std::vector<common::UniqueFd> open;
  int err = 0;
  for (int f = 0; f < 4 * kFdLimit && err == 0; ++f) {
    common::UniqueFd fd(::open(file(1, f).c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) err = errno;
    else open.push_back(std::move(fd));
  }
  EXPECT_TRUE(err == EMFILE || err == ENFILE) << std::strerror(err) << " after " << open.size() << " opens";
  EXPECT_FALSE(daemon_->exited());
  open.clear();

  // Once the files are closed and the kernel forgets, every lookup works again and the
  // daemon's fds are back where they were.
  drop_caches();
  EXPECT_TRUE(wait_until([&] { return count_fds(daemon_->pid()) <= baseline_fds_; }, 10s))
      << count_fds(daemon_->pid()) << " fds, " << baseline_fds_ << " before:\n" << baseline_listing_
      << "now:\n" << fd_listing(daemon_->pid());
  struct stat st {};
  for (int f = 0; f < 100; ++f) ASSERT_EQ(::stat(file(2, f).c_str(), &st), 0) << std::strerror(errno);
  for (int f = 0; f < 50; ++f) {
    common::UniqueFd fd(::open(file(3, f).c_str(), O_RDONLY | O_CLOEXEC));
    ASSERT_TRUE(fd) << f << ": " << std::strerror(errno);
    open.push_back(std::move(fd));
  }
  open.clear();
  EXPECT_EQ(ctl({"status"}).code, 0);
  EXPECT_FALSE(daemon_->exited());
}

// The O_PATH fd cache is sized from RLIMIT_NOFILE (half of it), so lookups evict cached fds
// (re-opened by handle) instead of running out.
TEST_F(FewFds, LookupsNeverRunOutOfFdsUnderALowLimit) {
  auto outcome = stat_all();
  EXPECT_EQ(outcome[0], kDirs * kFilesPerDir) << describe(outcome);
}

// portalfsd raises its soft limit to the hard one and caches O_PATH fds for half of it.
TEST_F(Fault, RaisesTheSoftFdLimitAndSizesTheFdCacheFromIt) {
  ASSERT_NO_FATAL_FAILURE(start_with({"/usr/bin/prlimit", "--nofile=256:1024", "--"}));
  EXPECT_THAT(read_file("/proc/" + std::to_string(daemon_->pid()) + "/limits"),
              ::testing::ContainsRegex("Max open files +1024 +1024 "));
  auto status = ctl({"status", "--format", "json"});
  ASSERT_EQ(status.code, 0) << status.err;
  EXPECT_EQ(nlohmann::json::parse(status.out)["filesystem"]["fd_cache_capacity"], 512) << status.out;
  EXPECT_THAT(read_file(dir_ / "daemon.log"), HasSubstr("open-file limit 1024: caching at most 512 O_PATH fds"));
}

}  // namespace
}  // namespace portalfs::testutil
