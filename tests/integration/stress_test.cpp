// SPDX-License-Identifier: MIT
// Concurrency: threads creating, renaming, unlinking and stat-ing the same few names in two
// directories, half of them through a second view of the same backing directory (so every
// change also invalidates a sibling view). Only the errnos such races legitimately produce
// are allowed; afterwards the views agree with the disk, the disk holds only whole files,
// and no fd is left open. PORTALFS_STRESS_SECONDS lengthens the 10 s default.
#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/fs_helpers.hpp"
#include "tests/integration/mounted_fs.hpp"

namespace portalfs::testutil {
namespace {

using Clock = std::chrono::steady_clock;

constexpr int kThreads = 4;
constexpr int kNames = 12;   // few names per directory, so the threads collide often
constexpr int kSubdirs = 3;
constexpr size_t kPayload = 64;

int stress_seconds() {
  const char* v = std::getenv("PORTALFS_STRESS_SECONDS");
  int s = v && *v ? std::atoi(v) : 10;
  return s > 0 ? s : 10;
}

/// Every file holds exactly one payload: 64 bytes, "payload:<thread>:<n>", padded.
std::string payload(int thread, unsigned n) {
  std::string s = "payload:" + std::to_string(thread) + ":" + std::to_string(n);
  s.resize(kPayload - 1, ' ');
  return s + "\n";
}
bool is_payload(const std::string& s) {
  return s.size() == kPayload && s.rfind("payload:", 0) == 0 && s.back() == '\n';
}

/// Unexpected outcomes by "op errno", shared by the threads.
class Tally {
 public:
  void add(const char* op, int err) {
    std::lock_guard lock(mutex_);
    std::ostringstream key;
    key << op << " ";
    PrintTo(Err{err}, &key);
    counts_[key.str()]++;
  }
  /// A read that was neither empty nor one whole payload; the first one is kept to show.
  void torn(const std::string& data) {
    std::lock_guard lock(mutex_);
    counts_["read: torn contents"]++;
    if (!sample_.empty()) return;
    sample_ = "size " + std::to_string(data.size()) + ": ";
    for (char c : data.substr(0, 80)) sample_ += (c >= 32 && c < 127) ? c : (c == 0 ? '0' : '.');
  }
  [[nodiscard]] std::string report() {
    std::lock_guard lock(mutex_);
    std::string out;
    for (const auto& [k, n] : counts_) out += "  " + k + " x" + std::to_string(n) + "\n";
    if (!sample_.empty()) out += "  first torn read: " + sample_ + "\n";
    return out;
  }

 private:
  std::mutex mutex_;
  std::map<std::string, size_t> counts_;
  std::string sample_;
};

bool expected(int err) { return err == 0 || err == ENOENT || err == EEXIST || err == ENOTEMPTY; }

/// One thread's churn through `view` until `until`.
void churn(const std::string& view, int id, Clock::time_point until, Tally& tally,
           std::atomic<size_t>& ops) {
  std::mt19937 rng(static_cast<unsigned>(id) * 7919u + 1u);
  auto pick = [&](int n) { return static_cast<int>(rng() % static_cast<unsigned>(n)); };
  auto check = [&](const char* op, long rc) {
    if (rc < 0 && !expected(errno)) tally.add(op, errno);
  };
  unsigned n = 0;
  while (Clock::now() < until) {
    const std::string d = view + "/d" + std::to_string(pick(2));
    const std::string d2 = view + "/d" + std::to_string(pick(2));
    const std::string f = d + "/f" + std::to_string(pick(kNames));
    const std::string g = d2 + "/f" + std::to_string(pick(kNames));
    const std::string s = d + "/s" + std::to_string(pick(kSubdirs));
    switch (pick(10)) {
      case 0:
      case 1: {  // create or overwrite with one whole payload
        const std::string& path = pick(3) == 0 ? s + "/f" : f;
        int fd = ::open(path.c_str(), O_CREAT | O_WRONLY | O_TRUNC | O_CLOEXEC, 0644);
        check("create", fd);
        if (fd >= 0) {
          const std::string p = payload(id, n++);
          ssize_t w = ::write(fd, p.data(), p.size());
          if (w != static_cast<ssize_t>(p.size())) tally.add("write", w < 0 ? errno : EIO);
          if (::close(fd) != 0) tally.add("close", errno);
        }
        break;
      }
      case 2:
        check("rename", ::rename(f.c_str(), g.c_str()));
        break;
      case 3:
        check("unlink", ::unlink(pick(3) == 0 ? (s + "/f").c_str() : f.c_str()));
        break;
      case 4: {
        struct stat st {};
        check("stat", ::stat(f.c_str(), &st));
        break;
      }
      case 5: {  // read: a file holds nothing or one whole payload, never a mix
        int fd = ::open(f.c_str(), O_RDONLY | O_CLOEXEC);
        check("open", fd);
        if (fd >= 0) {
          auto data = pread_str(fd, 2 * kPayload, 0);
          if (!data) tally.add("read", errno);
          // Whether the bytes are whole is the business of TornReads below.
          ::close(fd);
        }
        break;
      }
      case 6:
        check("mkdir", ::mkdir(s.c_str(), 0755));
        break;
      case 7:
        check("rmdir", ::rmdir(s.c_str()));
        break;
      case 8: {
        struct stat st {};
        check("lstat", ::lstat((s + "/f").c_str(), &st));
        break;
      }
      default:
        if (list_dir(d).empty()) tally.add("readdir", errno);
        break;
    }
    ops++;
  }
}

/// Names and inode numbers in one directory, as a view or the disk shows them.
std::map<std::string, ino_t> inodes_in(const std::string& dir) {
  std::map<std::string, ino_t> out;
  for (const auto& name : list_dir(dir)) {
    if (name == "." || name == "..") continue;
    struct stat st {};
    out[name] = ::lstat((dir + "/" + name).c_str(), &st) == 0 ? st.st_ino : 0;
  }
  return out;
}

// Churn in one directory through two views. Before invalidations had a thread of their own
// (fuse/notifier.hpp) this deadlocked within seconds: every worker blocked sending a sibling
// invalidation, waiting for a directory lock held by a request that had no worker left.
TEST(Stress, ChurnInTwoViewsOfOneDirectoryLeavesAConsistentDisk) {
  const size_t fds_before = count_open_fds();
  const int seconds = stress_seconds();
  std::string backing;
  TempDir keep("portalfs-stress");  // the backing tree outlives the mount, for the checks
  backing = keep.path() + "/shared";
  ASSERT_EQ(::mkdir(backing.c_str(), 0755), 0);
  size_t total_ops = 0;
  {
    MountedFs m;
    PORTALFS_REQUIRE_MOUNT(m);
    const std::string a = m.add_view("a", ViewKind::data, "s", backing);
    const std::string b = m.add_view("b", ViewKind::shared_squash, "s", backing);
    ASSERT_EQ(sys(::mkdir((a + "/d0").c_str(), 0755)), kOk);
    ASSERT_EQ(sys(::mkdir((a + "/d1").c_str(), 0755)), kOk);

    Tally tally;
    std::atomic<size_t> ops{0};
    const auto until = Clock::now() + std::chrono::seconds(seconds);
    std::vector<std::thread> threads;
    for (int i = 0; i < kThreads; ++i) {
      threads.emplace_back(churn, i % 2 == 0 ? a : b, i, until, std::ref(tally), std::ref(ops));
    }
    for (auto& t : threads) t.join();
    total_ops = ops.load();
    std::printf("stress: %zu ops in %d s by %d threads\n", total_ops, seconds, kThreads);
    RecordProperty("ops", std::to_string(total_ops));
    EXPECT_EQ(tally.report(), "") << "unexpected outcomes";
    EXPECT_GT(total_ops, 1000u);

    // Quiet now: a listing is never cached, so both views list exactly the disk; names and
    // inode numbers agree once the last invalidations are in (and the 1 s timeouts ran out
    // for lookups that raced a change).
    for (const char* d : {"/d0", "/d1"}) {
      EXPECT_EQ(list_dir(a + d), list_dir(backing + d)) << d;
      EXPECT_EQ(list_dir(b + d), list_dir(backing + d)) << d;
      const auto disk = inodes_in(backing + d);
      EXPECT_TRUE(eventually([&] { return inodes_in(a + d) == disk && inodes_in(b + d) == disk; },
                             std::chrono::milliseconds(3000)))
          << "a view still resolves a name of " << d << " to another inode than the disk";
    }
  }

  // After the unmount: only the two directories, holding only whole files and subdirectories
  // of the names the threads used, each file one payload with one link.
  EXPECT_EQ(list_dir(backing), (std::vector<std::string>{".", "..", "d0", "d1"}));
  for (const char* d : {"/d0", "/d1"}) {
    for (const auto& name : list_dir(backing + d)) {
      if (name == "." || name == "..") continue;
      const std::string p = backing + d + "/" + name;
      struct stat st {};
      ASSERT_TRUE(Lstat(p, &st));
      if (name[0] == 'f') {
        EXPECT_TRUE(S_ISREG(st.st_mode)) << p;
        EXPECT_EQ(st.st_nlink, 1u) << p;
        EXPECT_TRUE(is_payload(read_file(p))) << p << ": " << read_file(p);
      } else {
        ASSERT_EQ(name[0], 's') << p;
        EXPECT_TRUE(S_ISDIR(st.st_mode)) << p;
        for (const auto& inner : list_dir(p)) {
          if (inner == "." || inner == "..") continue;
          EXPECT_EQ(inner, "f") << p;
          EXPECT_TRUE(is_payload(read_file(p + "/" + inner))) << p << "/" << inner;
        }
      }
    }
  }
  // Every fd the mount and the daemon opened is closed again (a little slack for what the
  // C++ runtime may keep).
  EXPECT_LE(count_open_fds(), fds_before + 2) << "before the mount: " << fds_before;
}

// A file rewritten whole (O_TRUNC, then one 64-byte write) while a reader in a sibling view
// of the same directory opens and reads it: the reader may see the file empty or holding a
// payload, old or new, but never bytes that were never written. Such a file is served
// without the page cache (ops_file.cpp, set_caching); with it, about 1 read in 100 returned
// the zero-filled page of a short read.
//
// Not asserted for a reader in the writer's own view: there about 1 read in 20,000 returns
// zeros, on any FUSE file system with a page cache (passthrough_hp too). The server truncates
// the data before the kernel learns the new size; a read in that window gets a short reply,
// a zero-filled page, and copies it up to the size it still believes. README "POSIX
// differences" lists it.
TEST(TornReads, ReaderInASiblingViewSeesOnlyWrittenBytes) {
  MountedFs m;
  PORTALFS_REQUIRE_MOUNT(m);
  const std::string backing = m.storage() + "/shared";
  const std::string a = m.add_view("a", ViewKind::data, "s", backing);
  const std::string b = m.add_view("b", ViewKind::shared_ro, "s", backing);
  write_file(a + "/f", payload(0, 0));
  const std::string reader_path = b + "/f";
  const auto until = Clock::now() + std::chrono::seconds(3);
  Tally tally;
  std::atomic<size_t> reads{0};
  std::thread writer([&] {
    for (unsigned n = 1; Clock::now() < until; ++n) {
      auto fd = open_fd(a + "/f", O_WRONLY | O_TRUNC);
      const std::string p = payload(1, n);
      if (!fd || ::write(fd.get(), p.data(), p.size()) != static_cast<ssize_t>(p.size())) {
        tally.add("write", errno);
      }
    }
  });
  std::thread reader([&] {
    while (Clock::now() < until) {
      auto fd = open_fd(reader_path, O_RDONLY);
      if (!fd) {
        tally.add("open", errno);
        continue;
      }
      auto data = pread_str(fd.get(), 2 * kPayload, 0);
      if (!data) tally.add("read", errno);
      else if (!data->empty() && !is_payload(*data)) tally.torn(*data);
      reads++;
    }
  });
  writer.join();
  reader.join();
  std::printf("torn reads: %zu reads through a sibling view\n", reads.load());
  EXPECT_EQ(tally.report(), "");
  EXPECT_GT(reads.load(), 100u);
}

// O_CREAT|O_EXCL through two views of one directory at once: exactly one may win. The two
// views are two kernel inodes of the directory, so the kernel does not serialise the two
// creates; each looks the name up, finds it missing, and sends CREATE. The second must still
// fail with EEXIST on disk, not open the file the first one just made.
TEST(Stress, ExclusiveCreateThroughTwoViewsHasOneWinner) {
  MountedFs m;
  PORTALFS_REQUIRE_MOUNT(m);
  const std::string backing = m.storage() + "/shared";
  const std::string views[2] = {m.add_view("a", ViewKind::data, "s", backing),
                                m.add_view("b", ViewKind::shared_squash, "s", backing)};
  constexpr int kRounds = 1000;
  std::atomic<int> ready{0};
  std::atomic<int> round{-1};
  int wins[2][kRounds] = {};
  std::thread racers[2];
  for (int t = 0; t < 2; ++t) {
    racers[t] = std::thread([&, t] {
      for (int r = 0; r < kRounds; ++r) {
        ready++;
        while (round.load() < r) {
        }
        const std::string f = views[t] + "/x" + std::to_string(r);
        int fd = ::open(f.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0644);
        wins[t][r] = fd >= 0 ? 1 : (errno == EEXIST ? 0 : -errno);
        if (fd >= 0) ::close(fd);
      }
    });
  }
  for (int r = 0; r < kRounds; ++r) {
    while (ready.load() < 2 * (r + 1)) {
    }
    round.store(r);
  }
  racers[0].join();
  racers[1].join();
  int double_wins = 0, errors = 0;
  for (int r = 0; r < kRounds; ++r) {
    if (wins[0][r] == 1 && wins[1][r] == 1) double_wins++;
    if (wins[0][r] < 0 || wins[1][r] < 0 || wins[0][r] + wins[1][r] == 0) errors++;
  }
  std::printf("exclusive create: %d rounds, %d won twice\n", kRounds, double_wins);
  EXPECT_EQ(double_wins, 0) << "O_EXCL opens that both succeeded on one file";
  EXPECT_EQ(errors, 0);
}

// The reply to a write goes out before the daemon is done with the request (it then tells
// sibling views what changed); the kernel may release the file and forget the inode as soon
// as it has the reply. Short-lived writes race exactly that, the daemon must not touch the
// released handle or the forgotten inode afterwards (a use-after-free crashes this test, or
// corrupts the heap). One quiet writer makes the race likelier than a crowd: an idle daemon
// thread picks the release up at once while the writing one is still finishing.
void write_close_unlink(const std::string& path, Clock::time_point until, std::atomic<size_t>& ops,
                        std::atomic<size_t>& failures, const std::string& sibling = "") {
  while (Clock::now() < until) {
    auto fd = open_fd(path, O_CREAT | O_WRONLY | O_TRUNC, 0644);
    if (!fd || ::write(fd.get(), "abc", 3) != 3) failures++;
    fd.reset();
    if (!sibling.empty()) {
      struct stat st {};
      ::stat(sibling.c_str(), &st);  // gives the file an inode in the sibling view
    }
    if (::unlink(path.c_str()) != 0) failures++;
    ops++;
  }
}

TEST(Stress, CloseAndUnlinkRightAfterAWriteRaceNothing) {
  MountedFs m;
  PORTALFS_REQUIRE_MOUNT(m);
  const std::string backing = m.storage() + "/shared";
  const std::string a = m.add_view("a", ViewKind::data, "s", backing);
  const std::string b = m.add_view("b", ViewKind::shared_ro, "s", backing);
  const std::string solo = m.add_view("c", ViewKind::data, "solo");
  std::atomic<size_t> failures{0}, ops{0};
  write_close_unlink(solo + "/w", Clock::now() + std::chrono::seconds(2), ops, failures);
  write_close_unlink(a + "/w", Clock::now() + std::chrono::seconds(2), ops, failures, b + "/w");
  // And a crowd, for good measure.
  const auto until = Clock::now() + std::chrono::seconds(2);
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    const std::string name = "/w" + std::to_string(i);
    threads.emplace_back([&, name, i] {
      write_close_unlink((i % 2 ? solo : a) + name, until, ops, failures, i % 2 ? "" : b + name);
    });
  }
  for (auto& t : threads) t.join();
  std::printf("write/close/unlink: %zu rounds\n", ops.load());
  EXPECT_EQ(failures.load(), 0u);
  EXPECT_GT(ops.load(), 100u);
}

// The same race for directories: the reply to the last READDIR goes out while the daemon is
// still inside the handler, and the close that follows releases the directory handle at
// once. A handler that touches the handle after replying (unlocking its mutex, say) writes
// into freed memory; the heap corruption then aborts this test, at once or at teardown.
TEST(Stress, CloseRightAfterTheLastReaddirRacesNothing) {
  MountedFs m;
  PORTALFS_REQUIRE_MOUNT(m);
  const std::string v = m.add_view("app", ViewKind::data, "v");
  for (int i = 0; i < 20; ++i) write_file(v + "/f" + std::to_string(i), "x");
  ASSERT_EQ(sys(::mkdir((v + "/d").c_str(), 0755)), kOk);
  size_t rounds = 0, failures = 0;
  const auto until = Clock::now() + std::chrono::seconds(3);
  while (Clock::now() < until) {
    for (const std::string& dir : {v, v + "/d"}) {
      auto fd = open_fd(dir, O_RDONLY | O_DIRECTORY);
      if (!fd) {
        failures++;
        continue;
      }
      char buf[8192];
      ssize_t n;
      while ((n = ::getdents64(fd.get(), buf, sizeof(buf))) > 0) {
      }
      if (n < 0) failures++;
    }
    rounds++;
  }
  std::printf("list/close: %zu rounds\n", rounds);
  EXPECT_EQ(failures, 0u);
  EXPECT_GT(rounds, 100u);
}

}  // namespace
}  // namespace portalfs::testutil
