// SPDX-License-Identifier: MIT
// Attacks with names and paths, from inside app A's views (attack_fixture.hpp has the set-up):
// symlinks pointing out, ".." at a view root, openat2 RESOLVE_* flags, O_PATH re-opens, odd and
// long names, and races of renames and symlink swaps against lookups. Escape and read-only
// basics are in tests/integration (escape_test, readonly_view_test); these are the attacker's
// variations on them, each one TEST that must be refused or be harmless.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <ostream>
#include <string>
#include <thread>
#include <vector>

#include "tests/attack/attack_fixture.hpp"

namespace portalfs::testutil {
namespace {

using namespace std::chrono_literals;

/// openat2() as an errno (a descriptor it got is closed). RESOLVE_IN_ROOT and RESOLVE_BENEATH
/// answer EAGAIN when a rename or mount anywhere raced the walk (the kernel's seqcount check);
/// that is "try again", not a verdict, so it is retried.
Err openat2_err(int dirfd, const std::string& path, uint64_t flags, uint64_t resolve) {
  struct open_how how {};
  how.flags = flags | O_CLOEXEC;
  how.resolve = resolve;
  long fd = -1;
  for (int attempt = 0; attempt < 100; ++attempt) {
    fd = ::syscall(SYS_openat2, dirfd, path.c_str(), &how, sizeof(how));
    if (fd >= 0 || errno != EAGAIN) break;
  }
  if (fd < 0) return Err{errno};
  ::close(static_cast<int>(fd));
  return kOk;
}

/// How long the races run: PORTALFS_ATTACK_SECONDS, else 3 s.
std::chrono::seconds race_duration() {
  const char* env = std::getenv("PORTALFS_ATTACK_SECONDS");
  return std::chrono::seconds(env && *env ? std::atol(env) : 3);
}

/// What the openers of a race saw: opens that succeeded, failures by errno, and any opened
/// file that was not one of the allowed ones (each described).
struct OpenLog {
  std::mutex mutex;
  std::atomic<long> opened{0};
  std::map<int, long> failures;
  std::vector<std::string> escapes;

  void fail(int err) {
    std::lock_guard lock(mutex);
    failures[err]++;
  }
  void escape(const std::string& what) {
    std::lock_guard lock(mutex);
    if (escapes.size() < 10) escapes.push_back(what);
  }
  std::string summary() {
    std::lock_guard lock(mutex);
    std::string out = "opened " + std::to_string(opened.load());
    for (const auto& [err, n] : failures) {
      const char* name = ::strerrorname_np(err);
      out += ", " + std::string(name ? name : std::to_string(err)) + " " + std::to_string(n);
    }
    return out;
  }
};

/// Opens `path` (relative to `dirfd`) and checks what it got is on the mount, one of `allowed`
/// and holds `bytes`.
void open_and_check(int dirfd, const std::string& path, dev_t dev, const std::set<ino_t>& allowed,
                    const std::string& bytes, OpenLog& log) {
  auto fd = openat_fd(dirfd, path, O_RDONLY);
  if (!fd) return log.fail(errno);
  log.opened++;
  struct stat st {};
  ::fstat(fd.get(), &st);
  auto got = pread_str(fd.get(), 256, 0);
  if (st.st_dev != dev || !allowed.count(st.st_ino) || !got || *got != bytes) {
    log.escape(path + ": dev " + std::to_string(st.st_dev) + " ino " + std::to_string(st.st_ino) +
               " bytes \"" + got.value_or("<read failed>") + "\"");
  }
}

// ---- the restart pass ----
//
// The attacks that plant names (symlinks above all) run twice: as they are, and with the
// daemon stopped and started again between planting and using what was planted (a portalfsd
// restart over the same storage: MountedFs::restart). A fresh daemon knows nothing of what
// the app made, and reaches every view root again from disk (issue #18), so whatever it
// trusted of the running daemon's state must hold for the disk alone. The planted names and
// every check are the same in both passes; restart_attack_test.cpp has the attacks only a
// restart makes possible.

enum class Pass { no_restart, restart_between_plant_and_use };
const char* name_of(Pass pass) {
  return pass == Pass::no_restart ? "NoRestart" : "RestartBetweenPlantAndUse";
}
void PrintTo(Pass pass, std::ostream* os) { *os << name_of(pass); }

class SymlinkAttack : public Attack, public ::testing::WithParamInterface<Pass> {
 protected:
  /// Between planting and using: restarts the daemon in the second pass, which must serve
  /// every view again.
  void between_plant_and_use() {
    if (GetParam() == Pass::no_restart) return;
    ASSERT_EQ(restart(), std::vector<std::string>{});
  }
};

INSTANTIATE_TEST_SUITE_P(, SymlinkAttack,
                         ::testing::Values(Pass::no_restart, Pass::restart_between_plant_and_use),
                         [](const ::testing::TestParamInfo<Pass>& p) { return name_of(p.param); });

// ---- symlinks pointing out ----

TEST_P(SymlinkAttack, SymlinkToTheHostSecretIsStoredLiterallyAndDanglesInTheContainer) {
  // The app, as its unprivileged user in its container, links to the host's secret and
  // opens it for reading and for writing through the link.
  const std::string target = host_secret_;
  ASSERT_EQ(Err{in_jail(kAppUid, kAppGid, [&] {
              return rc_errno(::symlink(target.c_str(), "/data/abs"));
            })},
            kOk);
  ASSERT_NO_FATAL_FAILURE(between_plant_and_use());
  EXPECT_EQ(Err{in_jail(kAppUid, kAppGid, [] { return open_errno("/data/abs", O_RDONLY); })},
            Err{ENOENT});
  EXPECT_EQ(Err{in_jail(kAppUid, kAppGid,
                        [] { return open_errno("/data/abs", O_WRONLY | O_TRUNC); })},
            Err{ENOENT});
  // As root in the container too: the link is resolved in the container's namespace.
  EXPECT_EQ(Err{in_jail(0, 0, [] { return open_errno("/data/abs", O_RDWR | O_APPEND); })},
            Err{ENOENT});
  // Allowed but harmless: stored as a symlink, target byte for byte, owned by the app.
  struct stat st {};
  ASSERT_TRUE(Lstat(a_backing_ + "/abs", &st));
  EXPECT_TRUE(S_ISLNK(st.st_mode));
  EXPECT_EQ(st.st_uid, kAppUid);
  EXPECT_EQ(readlink_str(a_backing_ + "/abs"), target);
  // (A host process following it would reach the secret, as any host symlink does; TearDown
  // checks the secret is unchanged.)
}

TEST_P(SymlinkAttack, RelativeSymlinkClimbingOutOfTheViewFindsNothing) {
  // "../b-v/secret" is B's secret on the backing side (storage/a-v/../b-v), nothing through
  // the mount; "../" x 40 + the host path climbs to / of whoever follows it.
  std::string climb;
  for (int i = 0; i < 40; ++i) climb += "../";
  const std::string deep = climb + host_secret_.substr(1);
  ASSERT_EQ(sys(::symlink("../b-v/secret", (a_ + "/rel").c_str())), kOk);
  ASSERT_EQ(sys(::symlink(deep.c_str(), (a_ + "/deep").c_str())), kOk);
  EXPECT_EQ(readlink_str(a_backing_ + "/rel"), "../b-v/secret");
  EXPECT_EQ(readlink_str(a_backing_ + "/deep"), deep);
  ASSERT_NO_FATAL_FAILURE(between_plant_and_use());

  EXPECT_EQ(open_err(a_ + "/rel", O_RDONLY), Err{ENOENT});
  EXPECT_EQ(open_err(a_ + "/rel", O_WRONLY | O_TRUNC), Err{ENOENT});
  EXPECT_EQ(open_err(a_ + "/rel", O_WRONLY | O_CREAT, 0644), Err{ENOENT});
  for (uid_t uid : {uid_t{0}, kAppUid}) {
    EXPECT_EQ(Err{in_jail(uid, uid, [] { return open_errno("/data/rel", O_RDONLY); })},
              Err{ENOENT}) << "uid " << uid;
    EXPECT_EQ(Err{in_jail(uid, uid, [] { return open_errno("/data/deep", O_RDWR); })},
              Err{ENOENT}) << "uid " << uid;
  }
  // Through the whole mount (this test process sees it all) "deep" is the host path itself:
  // the caller's own namespace, which it could open anyway. Not followed by the daemon.
  EXPECT_FALSE(exists(m_.mountpoint() + "/apps/a/data/b-v"));
}

TEST_P(SymlinkAttack, SymlinkChainsAreFollowedOnlyByTheKernelAndOnlyInsideTheMount) {
  // A chain of eight links ending in the backing-side path to B's secret, a link to the view's
  // parent used as a directory, and a chain one longer than the kernel's limit of 40.
  for (int i = 0; i < 8; ++i) {
    const std::string next = i == 7 ? "../b-v/secret" : "c" + std::to_string(i + 1);
    ASSERT_EQ(sys(::symlink(next.c_str(), (a_ + "/c" + std::to_string(i)).c_str())), kOk);
  }
  ASSERT_EQ(sys(::symlink("..", (a_ + "/up").c_str())), kOk);
  write_file(a_ + "/f", "A's own file\n");
  for (int i = 0; i <= 40; ++i) {
    const std::string next = i == 40 ? "f" : "l" + std::to_string(i + 1);
    ASSERT_EQ(sys(::symlink(next.c_str(), (a_ + "/l" + std::to_string(i)).c_str())), kOk);
  }
  ASSERT_NO_FATAL_FAILURE(between_plant_and_use());

  EXPECT_EQ(open_err(a_ + "/c0", O_RDONLY), Err{ENOENT});
  EXPECT_EQ(open_err(a_ + "/c0", O_WRONLY | O_TRUNC), Err{ENOENT});
  EXPECT_EQ(open_err(a_ + "/up/b-v/secret", O_RDONLY), Err{ENOENT});
  // "up" is the synthetic directory above the view, not the backing parent.
  EXPECT_EQ(list_dir(a_ + "/up"), (std::vector<std::string>{".", "..", "v"}));
  EXPECT_EQ(Err{in_jail(kAppUid, kAppGid, [] { return open_errno("/data/up/b-v/secret", O_RDONLY); })},
            Err{ENOENT});
  // 41 links: the kernel counts them, so the daemon returns each and follows none.
  EXPECT_EQ(open_err(a_ + "/l0", O_RDONLY), Err{ELOOP});
  EXPECT_EQ(read_file(a_ + "/l1"), "A's own file\n");  // 40 links are fine
}

TEST_P(SymlinkAttack, SymlinkSwappedForADirectoryDuringLookupsNeverLeadsOut) {
  // "d" is a directory holding a decoy named like B's secret; "l" is a symlink to B's
  // backing directory (backing side only). Two threads keep exchanging the two names, one
  // through the view and one on the backing disk (as another view or the host would), while
  // two more open "d/secret" and "l/secret". Every open must find the decoy, or nothing.
  ASSERT_EQ(sys(::mkdir((a_ + "/d").c_str(), 0755)), kOk);
  write_file(a_ + "/d/secret", "A's decoy\n");
  ASSERT_EQ(sys(::symlink("../b-v", (a_ + "/l").c_str())), kOk);
  ASSERT_NO_FATAL_FAILURE(between_plant_and_use());
  struct stat decoy {};
  ASSERT_TRUE(Stat(a_ + "/d/secret", &decoy));
  const std::set<ino_t> allowed = {decoy.st_ino};

  auto view = open_fd(a_, O_PATH | O_DIRECTORY);
  auto backing = open_fd(a_backing_, O_PATH | O_DIRECTORY);
  ASSERT_TRUE(view && backing);
  std::atomic<bool> stop{false};
  std::atomic<long> swaps{0};
  OpenLog log;
  std::vector<std::thread> threads;
  for (int dirfd : {view.get(), backing.get()}) {
    threads.emplace_back([&, dirfd] {
      while (!stop) {
        if (::renameat2(dirfd, "d", dirfd, "l", RENAME_EXCHANGE) == 0) swaps++;
      }
    });
  }
  for (const char* path : {"d/secret", "l/secret"}) {
    threads.emplace_back([&, path] {
      while (!stop) open_and_check(view.get(), path, fuse_dev_, allowed, "A's decoy\n", log);
    });
  }
  std::this_thread::sleep_for(race_duration());
  stop = true;
  for (auto& t : threads) t.join();

  std::cout << "[ swap race ] swaps " << swaps << ", " << log.summary() << "\n";
  EXPECT_TRUE(log.escapes.empty()) << log.escapes.front();
  EXPECT_GT(swaps.load(), 0);
  for (const auto& [err, n] : log.failures) {
    EXPECT_TRUE(err == ENOENT || err == ENOTDIR) << Err{err} << " x" << n;
  }
  // The daemon still serves, and the two names are still one directory and one symlink.
  view.reset();
  backing.reset();
  struct stat d {}, l {};
  ASSERT_TRUE(Lstat(a_backing_ + "/d", &d));
  ASSERT_TRUE(Lstat(a_backing_ + "/l", &l));
  EXPECT_TRUE(S_ISDIR(d.st_mode) != S_ISDIR(l.st_mode));
  EXPECT_TRUE(S_ISLNK(d.st_mode) != S_ISLNK(l.st_mode));
  write_file(a_ + "/after", "still serving\n");
  EXPECT_EQ(read_file(a_backing_ + "/after"), "still serving\n");
}

// ---- ".." at a view root ----

TEST_P(SymlinkAttack, DotDotAtTheViewRootReachesNeitherTheBackingParentNorOtherApps) {
  write_file(a_ + "/f", "A's file\n");
  ASSERT_NO_FATAL_FAILURE(between_plant_and_use());
  const auto storage_before = list_dir(m_.storage());
  // Names made through ".." would land in the synthetic directory above the view (read-only),
  // or, resolved on the backing side, in the storage root next to B's data.
  EXPECT_EQ(sys(::rename((a_ + "/f").c_str(), (a_ + "/../escaped").c_str())), Err{EROFS});
  EXPECT_EQ(sys(::link((a_ + "/f").c_str(), (a_ + "/../escaped").c_str())), Err{EROFS});
  EXPECT_EQ(sys(::symlink("v/f", (a_ + "/../escaped").c_str())), Err{EROFS});
  EXPECT_EQ(sys(::mkdir((a_ + "/../escaped").c_str(), 0755)), Err{EROFS});
  EXPECT_EQ(open_err(a_ + "/../b-v/secret", O_RDONLY), Err{ENOENT});
  EXPECT_EQ(list_dir(m_.storage()), storage_before);
  EXPECT_EQ(read_file(a_backing_ + "/f"), "A's file\n");

  // In the container ".." at /data is the container's own root (a tmpfs here), whoever asks.
  for (uid_t uid : {uid_t{0}, kAppUid}) {
    EXPECT_EQ(Err{in_jail(uid, uid, [] { return open_errno("/data/../b-v/secret", O_RDONLY); })},
              Err{ENOENT});
    EXPECT_EQ(Err{in_jail(uid, uid, [] {
                return open_errno("/data/../../../../apps/b/data/v/secret", O_RDONLY);
              })},
              Err{ENOENT});
    const dev_t dev = fuse_dev_;
    EXPECT_EQ(in_jail(uid, uid, [dev] {
                struct stat st {};
                if (::stat("/data/..", &st) != 0) return errno;
                return st.st_dev == dev ? 1 : 0;  // 1: ".." is still on the FUSE mount
              }),
              0);
  }
}

// ---- openat2 ----

TEST_P(SymlinkAttack, Openat2ResolveFlagsKeepTheirMeaningOnTheMount) {
  ASSERT_EQ(sys(::symlink("../b-v/secret", (a_ + "/rel").c_str())), kOk);
  ASSERT_EQ(sys(::symlink(host_secret_.c_str(), (a_ + "/abs").c_str())), kOk);
  write_file(a_ + "/f", "A's file\n");
  ASSERT_NO_FATAL_FAILURE(between_plant_and_use());
  auto view = open_fd(a_, O_PATH | O_DIRECTORY);
  auto ro = open_fd(s2_, O_PATH | O_DIRECTORY);
  auto file = open_fd(s2_ + "/ro_file", O_PATH);
  ASSERT_TRUE(view && ro && file);
  const int v = view.get();
  const std::string to_b = "../../../b/data/v/secret";  // B's view, through the mount

  // RESOLVE_BENEATH: nothing above the view, neither by ".." nor by a symlink.
  EXPECT_EQ(openat2_err(v, to_b, O_RDONLY, RESOLVE_BENEATH), Err{EXDEV});
  EXPECT_EQ(openat2_err(v, "rel", O_RDONLY, RESOLVE_BENEATH), Err{EXDEV});
  EXPECT_EQ(openat2_err(v, "abs", O_RDONLY, RESOLVE_BENEATH), Err{EXDEV});
  EXPECT_EQ(openat2_err(v, "f", O_RDONLY, RESOLVE_BENEATH), kOk);
  // RESOLVE_IN_ROOT: the view is "/", so both land on names the view does not have.
  EXPECT_EQ(openat2_err(v, to_b, O_RDONLY, RESOLVE_IN_ROOT), Err{ENOENT});
  EXPECT_EQ(openat2_err(v, "abs", O_RDONLY, RESOLVE_IN_ROOT), Err{ENOENT});
  EXPECT_EQ(openat2_err(v, "rel", O_RDONLY, RESOLVE_IN_ROOT), Err{ENOENT});
  // RESOLVE_NO_SYMLINKS: the daemon hands symlinks back, so the kernel can refuse them.
  EXPECT_EQ(openat2_err(v, "rel", O_RDONLY, RESOLVE_NO_SYMLINKS), Err{ELOOP});
  EXPECT_EQ(openat2_err(v, "abs", O_WRONLY, RESOLVE_NO_SYMLINKS), Err{ELOOP});
  // RESOLVE_NO_MAGICLINKS: no re-open of an O_PATH fd through /proc.
  const std::string magic = "/proc/self/fd/" + std::to_string(file.get());
  EXPECT_EQ(openat2_err(AT_FDCWD, magic, O_RDWR, RESOLVE_NO_MAGICLINKS), Err{ELOOP});
  // Resolution that stays inside the read-only share still meets the daemon's EROFS.
  const uint64_t strict = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS |
                          RESOLVE_NO_XDEV;
  EXPECT_EQ(openat2_err(ro.get(), "ro_file", O_WRONLY, strict), Err{EROFS});
  EXPECT_EQ(openat2_err(ro.get(), "ro_file", O_RDWR | O_TRUNC, strict), Err{EROFS});
  EXPECT_EQ(openat2_err(ro.get(), "new", O_WRONLY | O_CREAT, strict), Err{EROFS});
  EXPECT_EQ(openat2_err(ro.get(), "ro_file", O_RDONLY, strict), kOk);
}

// ---- O_PATH + /proc/self/fd/N ----

TEST_F(Attack, OPathReopenForWriteOfAReadOnlyShareFileIsErofs) {
  auto opath = open_fd(s2_ + "/ro_file", O_PATH);
  auto rdonly = open_fd(s2_ + "/ro_file", O_RDONLY);
  ASSERT_TRUE(opath && rdonly);
  for (int fd : {opath.get(), rdonly.get()}) {
    const std::string proc = "/proc/self/fd/" + std::to_string(fd);
    EXPECT_EQ(open_err(proc, O_RDWR), Err{EROFS}) << proc;
    EXPECT_EQ(open_err(proc, O_WRONLY | O_TRUNC), Err{EROFS}) << proc;
    EXPECT_EQ(open_err(proc, O_WRONLY | O_APPEND), Err{EROFS}) << proc;
    EXPECT_EQ(sys(::truncate(proc.c_str(), 0)), Err{EROFS}) << proc;
    EXPECT_EQ(sys(::chmod(proc.c_str(), 0777)), Err{EROFS}) << proc;
  }
  // The same by the container's unprivileged user (the file's owner, mode 0666).
  auto reopen = [](int flags) {
    return [flags] {
      int fd = ::open("/s2/ro_file", O_PATH | O_CLOEXEC);
      if (fd < 0) return 200;
      int err = open_errno(("/proc/self/fd/" + std::to_string(fd)).c_str(), flags);
      ::close(fd);
      return err;
    };
  };
  EXPECT_EQ(Err{in_jail(kAppUid, kAppGid, reopen(O_RDWR))}, Err{EROFS});
  EXPECT_EQ(Err{in_jail(kAppUid, kAppGid, reopen(O_WRONLY | O_TRUNC))}, Err{EROFS});
  EXPECT_EQ(read_file(s2_backing_ + "/ro_file"), kReadOnlyBytes);
}

// ---- names ----

TEST_P(SymlinkAttack, NamesWithNewlinesInASharedDirStayExactlyWhatTheyAre) {
  // The app's user, in its container, makes names meant to confuse line-based tools.
  ASSERT_EQ(Err{in_jail(kAppUid, kAppGid, [] {
              if (int fd = ::open("/s1/evil\nname", O_CREAT | O_WRONLY | O_CLOEXEC, 0644); fd < 0) return errno;
              else ::close(fd);
              if (::mkdir("/s1/\n", 0755) != 0) return errno;
              if (::rename("/s1/evil\nname", "/s1/\n/..\nsecret") != 0) return errno;
              return rc_errno(::symlink("\n../b-v/secret", "/s1/link\n"));
            })},
            kOk);
  ASSERT_NO_FATAL_FAILURE(between_plant_and_use());
  EXPECT_EQ(Err{in_jail(kAppUid, kAppGid, [] {
              return open_errno("/s1/link\n", O_RDONLY);  // dangling, wherever it is resolved
            })},
            Err{ENOENT});
  EXPECT_EQ(list_dir(s1_backing_), (std::vector<std::string>{"\n", ".", "..", "link\n"}));
  EXPECT_EQ(list_dir(s1_backing_ + "/\n"), (std::vector<std::string>{".", "..", "..\nsecret"}));
  EXPECT_EQ(list_dir(s1_ + "/\n"), (std::vector<std::string>{".", "..", "..\nsecret"}));
  EXPECT_EQ(readlink_str(s1_backing_ + "/link\n"), "\n../b-v/secret");
  struct stat st {};
  ASSERT_TRUE(Lstat(s1_backing_ + "/\n/..\nsecret", &st));
  EXPECT_EQ(st.st_uid, 2000u);  // squashed to the share's owner
  EXPECT_EQ(st.st_size, 0);
}

TEST_P(SymlinkAttack, NamesOf256BytesAndSymlinkTargetsOf4096AreRefused) {
  const std::string n255(255, 'n');
  const std::string n256(256, 'n');
  const std::string t4095(4095, 't');
  const std::string t4096(4096, 't');
  auto as_app = [&](const std::function<int()>& fn) { return Err{in_jail(kAppUid, kAppGid, fn)}; };
  EXPECT_EQ(as_app([&] { return open_errno(("/s1/" + n255).c_str(), O_CREAT | O_WRONLY); }), kOk);
  EXPECT_EQ(as_app([&] { return open_errno(("/s1/" + n256).c_str(), O_CREAT | O_WRONLY); }),
            Err{ENAMETOOLONG});
  EXPECT_EQ(as_app([&] { return rc_errno(::mkdir(("/s1/d" + n256).c_str(), 0755)); }),
            Err{ENAMETOOLONG});
  EXPECT_EQ(as_app([&] { return rc_errno(::rename(("/s1/" + n255).c_str(), ("/s1/" + n256).c_str())); }),
            Err{ENAMETOOLONG});
  EXPECT_EQ(as_app([&] { return rc_errno(::symlink(t4095.c_str(), "/s1/long")); }), kOk);
  EXPECT_EQ(as_app([&] { return rc_errno(::symlink(t4096.c_str(), "/s1/longer")); }),
            Err{ENAMETOOLONG});
  ASSERT_NO_FATAL_FAILURE(between_plant_and_use());
  // Exactly what succeeded is on disk, nothing cut short.
  EXPECT_EQ(list_dir(s1_backing_), (std::vector<std::string>{".", "..", "long", n255}));
  EXPECT_EQ(readlink_str(s1_backing_ + "/long"), t4095);
  EXPECT_EQ(readlink_str(s1_ + "/long"), t4095);
}

TEST_F(Attack, PathsLongerThanPathMaxStayInsideTheView) {
  // 24 levels of 250-byte names: 6000 bytes below the view, past PATH_MAX on both sides. The
  // daemon never builds a path, so the file lands exactly there and nowhere shorter.
  constexpr int kDepth = 24;
  std::vector<std::string> names;
  for (int i = 0; i < kDepth; ++i) names.push_back(std::string(249, 'a' + i % 26) + std::to_string(i % 10));
  const int rc = in_jail(kAppUid, kAppGid, [&] {
    int dir = ::open("/data", O_PATH | O_DIRECTORY | O_CLOEXEC);
    std::string path = "/data";
    for (const auto& n : names) {
      if (::mkdirat(dir, n.c_str(), 0755) != 0) return errno;
      int next = ::openat(dir, n.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
      if (next < 0) return errno;
      ::close(dir);
      dir = next;
      path += "/" + n;
    }
    int fd = ::openat(dir, "leaf", O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
    if (fd < 0 || ::write(fd, "deep\n", 5) != 5) return 201;
    ::close(fd);
    // By absolute path the kernel refuses it before anyone resolves anything.
    int err = open_errno((path + "/leaf").c_str(), O_RDONLY);
    // Moved back up to the view root by fd: the daemon renames by its own fds.
    int top = ::open("/data", O_PATH | O_DIRECTORY | O_CLOEXEC);
    int parent = ::openat(dir, "..", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (::renameat(parent, names.back().c_str(), top, "moved") != 0) err = 202;
    ::close(parent);
    ::close(top);
    ::close(dir);
    return err;
  });
  EXPECT_EQ(Err{rc}, Err{ENAMETOOLONG});
  EXPECT_EQ(read_file(a_ + "/moved/leaf"), "deep\n");
  EXPECT_EQ(read_file(a_backing_ + "/moved/leaf"), "deep\n");
  EXPECT_EQ(list_dir(a_backing_), (std::vector<std::string>{".", "..", names[0], "moved"}));
  // The chain is intact on disk, one fewer level now.
  common::UniqueFd dir(::open(a_backing_.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  for (int i = 0; i + 1 < kDepth && dir; ++i) {
    dir.reset(::openat(dir.get(), names[i].c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  }
  ASSERT_TRUE(dir);
  EXPECT_EQ(list_dir_fd(dir.get()), (std::vector<std::string>{".", ".."}));
  EXPECT_EQ(list_dir(m_.storage()), (std::vector<std::string>{".", "..", "a-s1", "a-s2", "a-s3", "a-v", "b-v"}));
}

// ---- directory offsets ----

TEST_F(Attack, ReaddirAtForgedOffsetsListsOnlyTheDirectorysOwnNames) {
  // lseek() on a directory fd hands the daemon any offset the app likes (its seekdir, or an
  // index into a synthetic listing). Whatever comes back must be names of that directory.
  for (const char* n : {"f1", "f2", "f3"}) write_file(a_ + "/" + n, n);
  const std::vector<std::pair<std::string, std::vector<std::string>>> dirs = {
      {a_, {".", "..", "f1", "f2", "f3"}},
      {m_.mountpoint() + "/apps/a/shared", {".", "..", "s1", "s2", "s3"}}};
  const off_t offsets[] = {1, 2, 3, 12345, 0x7fffffff, off_t{1} << 40, off_t{1} << 62,
                           0x7fffffffffffffff};
  for (const auto& [dir, names] : dirs) {
    auto fd = open_fd(dir, O_RDONLY | O_DIRECTORY);
    ASSERT_TRUE(fd) << dir;
    for (off_t off : offsets) {
      if (::lseek(fd.get(), off, SEEK_SET) < 0) continue;  // the kernel refused the offset
      char buf[4096];
      long n = ::syscall(SYS_getdents64, fd.get(), buf, sizeof(buf));
      if (n < 0) {
        EXPECT_TRUE(errno == EINVAL || errno == ENOENT) << dir << " @" << off << ": " << Err{errno};
        continue;
      }
      for (long pos = 0; pos < n;) {
        struct Dirent64 {
          uint64_t ino;
          int64_t off;
          unsigned short reclen;
          unsigned char type;
          char name[1];
        };
        const auto* d = reinterpret_cast<const Dirent64*>(buf + pos);
        EXPECT_NE(std::find(names.begin(), names.end(), std::string(d->name)), names.end())
            << dir << " @" << off << " gave \"" << d->name << "\"";
        pos += d->reclen;
      }
    }
  }
  EXPECT_EQ(list_dir(a_), dirs[0].second);  // and the daemon still lists from the start
}

// ---- rename races ----

TEST_F(Attack, RenameRaceMovingADirectoryInAndOutWhileOpeningThroughItStaysInTheView) {
  // Three threads move "d" between "d", "e" and "top/sub/d" (in and out of a subtree) while
  // two open its file by every name it may have and through a descriptor held on it, with
  // ".." walks that depend on where it is at that moment. Every opened file must be A's
  // file; every failure a plain ENOENT.
  ASSERT_EQ(sys(::mkdir((a_ + "/top").c_str(), 0755)), kOk);
  ASSERT_EQ(sys(::mkdir((a_ + "/top/sub").c_str(), 0755)), kOk);
  ASSERT_EQ(sys(::mkdir((a_ + "/d").c_str(), 0755)), kOk);
  write_file(a_ + "/d/f", "A's f\n");
  const std::set<ino_t> allowed = inodes_of_tree(a_backing_);
  auto root = open_fd(a_, O_PATH | O_DIRECTORY);
  auto held = open_fd(a_ + "/d", O_PATH | O_DIRECTORY);
  ASSERT_TRUE(root && held);

  std::atomic<bool> stop{false};
  std::atomic<long> renames{0};
  OpenLog log;
  const int r = root.get();
  auto mover = [&](const char* from, const char* to) {
    return [&, from, to] {
      while (!stop) {
        if (::renameat(r, from, r, to) == 0) renames++;
        if (::renameat(r, to, r, from) == 0) renames++;
      }
    };
  };
  std::vector<std::thread> threads;
  threads.emplace_back(mover("d", "e"));
  threads.emplace_back(mover("d", "top/sub/d"));
  threads.emplace_back(mover("e", "top/sub/d"));
  const std::vector<std::pair<int, std::string>> paths = {
      {r, "d/f"}, {r, "e/f"}, {r, "top/sub/d/f"}, {held.get(), "f"},
      {held.get(), "../d/f"}, {held.get(), "../../sub/d/f"}, {held.get(), "../../../d/f"}};
  for (int t = 0; t < 2; ++t) {
    threads.emplace_back([&] {
      while (!stop) {
        for (const auto& [dirfd, path] : paths) {
          open_and_check(dirfd, path, fuse_dev_, allowed, "A's f\n", log);
        }
      }
    });
  }
  std::this_thread::sleep_for(race_duration());
  stop = true;
  for (auto& t : threads) t.join();

  std::cout << "[ rename race ] renames " << renames << ", " << log.summary() << "\n";
  EXPECT_TRUE(log.escapes.empty()) << log.escapes.front();
  EXPECT_GT(renames.load(), 0);
  EXPECT_GT(log.opened.load(), 0);
  for (const auto& [err, n] : log.failures) EXPECT_EQ(Err{err}, Err{ENOENT}) << " x" << n;
  // Nothing left the view or appeared in it, and the daemon still serves.
  EXPECT_EQ(inodes_of_tree(a_backing_), allowed);
  root.reset();
  held.reset();
  write_file(a_ + "/after", "still serving\n");
  EXPECT_EQ(read_file(a_backing_ + "/after"), "still serving\n");
}

}  // namespace
}  // namespace portalfs::testutil
