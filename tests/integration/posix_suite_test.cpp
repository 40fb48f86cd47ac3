// SPDX-License-Identifier: MIT
// The POSIX conformance suite (STYLE 14), written once and run on every read-write kind of
// view: a data view (identity ids), a shared view with a range map, a shared view squashing
// owners. Each test acts through the mount as a non-root caller the view maps (FsIds on the
// test thread, or run_as in a forked child), and checks what the caller sees, what lands on
// the backing disk, and the errno of what must fail.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <functional>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "tests/integration/fs_helpers.hpp"
#include "tests/integration/mounted_fs.hpp"

namespace portalfs::testutil {
namespace {

struct Ids {
  uid_t uid;
  gid_t gid;
};

/// What one kind of view does with ids, as the suite needs to know it.
struct KindCase {
  ViewKind kind;
  Ids caller;         // the test body's caller: not root, mapped, presented as owner of its files
  Ids caller_disk;    // the owner the caller's files get on disk
  Ids other;          // a second unprivileged caller that owns nothing here
  Ids creator;        // the run_as caller of the ownership test
  Ids creator_disk;   //   what its files get on disk
  Ids creator_shown;  //   and how the view presents them
  Ids chown_to;       // a presented owner a (root) chown may ask for
  Ids chown_disk;     //   and what that chown stores
  std::optional<uint32_t> unmapped;  // a presented id chown refuses (identity maps have none)
  bool setid_kept;    // set-uid and set-gid are kept (data views only: setid_bits.hpp)
  bool passthrough = true;  // the mount's Options::passthrough (data views use it)
  const char* name = nullptr;  // the test name's suffix, if not the kind's
};

const KindCase kData{ViewKind::data,
                     {1000, 1000}, {1000, 1000}, {2000, 2000},
                     {65534, 65534}, {65534, 65534}, {65534, 65534},
                     {3000, 3000}, {3000, 3000}, std::nullopt, true};
// The same data view with its reads and writes served by the daemon (no kernel passthrough).
KindCase served(KindCase c) {
  c.passthrough = false;
  c.name = "data_served";
  return c;
}
const KindCase kDataServed = served(kData);
const KindCase kSharedMap{ViewKind::shared_map,
                          {101000, 101000}, {1000, 1000}, {102000, 102000},
                          {101000, 101000}, {1000, 1000}, {101000, 101000},
                          {102000, 102000}, {2000, 2000}, 5000, false};
const KindCase kSharedSquash{ViewKind::shared_squash,
                             {1000, 1000}, {2000, 2000}, {4242, 4242},
                             {4242, 4242}, {2000, 2000}, {1000, 1000},
                             {1000, 1000}, {2000, 2000}, 3000, false};

// The rootless lane (tests/rootless) runs the suite as an ordinary user, who can be no other
// caller: data views (identity maps) with that user as the caller, under the same names, and
// the tests that need other users left out by name there.
KindCase as_own_user(KindCase c) {
  const Ids own{::getuid(), ::getgid()};
  c.caller = c.caller_disk = c.creator = c.creator_disk = c.creator_shown = c.chown_to = c.chown_disk = own;
  return c;
}
std::vector<KindCase> writable_kinds() {
  if (::geteuid() != 0) return {as_own_user(kData), as_own_user(kDataServed)};
  return {kData, kDataServed, kSharedMap, kSharedSquash};
}

std::string name_of(const KindCase& c) { return c.name ? c.name : to_string(c.kind); }
void PrintTo(const KindCase& c, std::ostream* os) { *os << name_of(c); }

constexpr off_t kMiB = 1 << 20;

class Posix : public ::testing::TestWithParam<KindCase> {
 protected:
  void SetUp() override {
    PORTALFS_REQUIRE_MOUNT(m_);
    view_ = m_.add_view("app", kind().kind, "v");
    backing_ = m_.views().back().backing;
    // An app's user may create in its view's root: here the root belongs to the host, so
    // open it up rather than chown it (the same for every kind).
    ASSERT_EQ(::chmod(backing_.c_str(), 0777), 0);
    if (::geteuid() != 0) {  // the rootless lane: there are no root's capabilities to lose
      caller_.emplace(kind().caller.uid, kind().caller.gid);
      return;
    }
    // A root-only file proves below that the caller really lost root's file capabilities,
    // so the permission checks this suite relies on are the kernel's, not root's bypass.
    const std::string probe = m_.storage() + "/root-only";
    write_file(probe, "x");
    ASSERT_EQ(::chmod(probe.c_str(), 0600), 0);
    caller_.emplace(kind().caller.uid, kind().caller.gid);
    ASSERT_EQ(open_err(probe, O_RDONLY), Err{EACCES})
        << "the test thread still has root's file capabilities";
  }
  void TearDown() override { caller_.reset(); }

  static const KindCase& kind() { return GetParam(); }
  [[nodiscard]] std::string at(const std::string& rel) const { return view_ + "/" + rel; }
  [[nodiscard]] std::string on_disk(const std::string& rel) const { return backing_ + "/" + rel; }

  /// lstat of the backing file, as root (the caller may not see every backing path).
  struct stat disk_stat(const std::string& rel) {
    FsIds root(0, 0);
    struct stat st {};
    EXPECT_TRUE(Lstat(on_disk(rel), &st));
    return st;
  }
  Err disk_lstat_err(const std::string& rel) {
    FsIds root(0, 0);
    struct stat st {};
    return sys(::lstat(on_disk(rel).c_str(), &st));
  }
  std::string disk_read(const std::string& rel) {
    FsIds root(0, 0);
    return read_file(on_disk(rel));
  }
  /// Presented attributes through the view.
  struct stat shown(const std::string& rel) {
    struct stat st {};
    EXPECT_TRUE(Lstat(at(rel), &st));
    return st;
  }
  /// Creates (or truncates) a file through the view with `content`.
  Err make_file(const std::string& rel, const std::string& content, mode_t mode = 0644) {
    auto fd = open_fd(at(rel), O_CREAT | O_WRONLY | O_TRUNC, mode);
    if (!fd) return Err{errno};
    bool ok = write_all(fd.get(), content);
    int err = errno;
    fd.reset();
    return ok ? kOk : Err{err};
  }
  static void expect_owner(const struct stat& st, Ids ids, const std::string& what) {
    EXPECT_EQ(st.st_uid, ids.uid) << what;
    EXPECT_EQ(st.st_gid, ids.gid) << what;
  }

  /// The usual umask of a daemon started from a shell or systemd, in force when the
  /// filesystem mounts (declared before m_, so it is set first) and restored afterwards.
  struct Umask022 {
    mode_t old = ::umask(022);
    ~Umask022() { ::umask(old); }
  } umask_;
  MountedFs m_{fuse::Options{.passthrough = kind().passthrough}};
  std::string view_;
  std::string backing_;
  std::optional<FsIds> caller_;
};

TEST_P(Posix, CreateReadWriteTruncateAppend) {
  auto fd = open_fd(at("f"), O_CREAT | O_EXCL | O_RDWR, 0644);
  ASSERT_TRUE(fd) << std::strerror(errno);
  ASSERT_TRUE(write_all(fd.get(), "hello world"));
  EXPECT_EQ(pread_str(fd.get(), 5, 6), "world");
  EXPECT_EQ(disk_read("f"), "hello world");  // no writeback cache: on disk once written

  ASSERT_EQ(sys(::ftruncate(fd.get(), 5)), kOk);
  struct stat st {};
  ASSERT_EQ(::fstat(fd.get(), &st), 0);
  EXPECT_EQ(st.st_size, 5);
  EXPECT_EQ(disk_read("f"), "hello");
  fd.reset();

  fd = open_fd(at("f"), O_WRONLY | O_APPEND);
  ASSERT_TRUE(fd) << std::strerror(errno);
  ASSERT_TRUE(write_all(fd.get(), " again"));
  fd.reset();
  EXPECT_EQ(disk_read("f"), "hello again");
  EXPECT_EQ(read_file(at("f")), "hello again");

  ASSERT_EQ(sys(::truncate(at("f").c_str(), 2)), kOk);
  EXPECT_EQ(disk_read("f"), "he");
  ASSERT_EQ(sys(::truncate(at("f").c_str(), 4)), kOk);  // growing fills with zeros
  EXPECT_EQ(disk_read("f"), std::string("he\0\0", 4));
  EXPECT_EQ(shown("f").st_size, 4);
}

TEST_P(Posix, CreatedFilesBelongToTheCallerOnDiskAndAsPresented) {
  ASSERT_EQ(make_file("f", "x"), kOk);
  ASSERT_EQ(sys(::mkdir(at("d").c_str(), 0755)), kOk);
  ASSERT_EQ(sys(::symlink("f", at("l").c_str())), kOk);
  for (const char* name : {"f", "d", "l"}) {
    expect_owner(disk_stat(name), kind().caller_disk, std::string("on disk: ") + name);
    expect_owner(shown(name), kind().caller, std::string("presented: ") + name);
  }
}

TEST_P(Posix, ForkedNonRootCallerOwnsWhatItCreates) {
  const Ids c = kind().creator;
  const std::string f = at("f"), d = at("d"), l = at("l"), n = at("n");
  int rc = run_as(c.uid, c.gid, [&] {
    int fd = ::open(f.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
    if (fd < 0) return errno;
    ::close(fd);
    if (::mkdir(d.c_str(), 0755) != 0) return errno;
    if (::symlink("f", l.c_str()) != 0) return errno;
    if (::mknod(n.c_str(), S_IFREG | 0644, 0) != 0) return errno;
    return 0;
  });
  ASSERT_EQ(Err{rc}, kOk);
  for (const char* name : {"f", "d", "l", "n"}) {
    expect_owner(disk_stat(name), kind().creator_disk, std::string("on disk: ") + name);
    expect_owner(shown(name), kind().creator_shown, std::string("presented: ") + name);
  }
}

TEST_P(Posix, NonOwnerGetsEaccesWritingA0644File) {
  ASSERT_EQ(make_file("f", "mine", 0644), kOk);
  const std::string f = at("f");
  const Ids o = kind().other;
  auto as_other = [&](const std::function<int()>& fn) { return Err{run_as(o.uid, o.gid, fn)}; };
  EXPECT_EQ(as_other([&] { return sys(::open(f.c_str(), O_WRONLY | O_CLOEXEC)).value; }),
            Err{EACCES});
  EXPECT_EQ(as_other([&] { return sys(::open(f.c_str(), O_RDWR | O_CLOEXEC)).value; }),
            Err{EACCES});
  EXPECT_EQ(as_other([&] { return sys(::truncate(f.c_str(), 0)).value; }), Err{EACCES});
  EXPECT_EQ(as_other([&] { return sys(::chmod(f.c_str(), 0666)).value; }), Err{EPERM});
  // Reading is what 0644 gives everyone.
  EXPECT_EQ(as_other([&] { return sys(::open(f.c_str(), O_RDONLY | O_CLOEXEC)).value; }), kOk);
  EXPECT_EQ(disk_read("f"), "mine");
  EXPECT_EQ(disk_stat("f").st_mode & 07777, 0644u);
}

TEST_P(Posix, UmaskIsTheCallersNotTheDaemons) {
  // The daemon runs in this process, which had the usual umask 022 when it mounted (the
  // fixture sets it first). The kernel applies the caller's umask before sending a create
  // (no FUSE_CAP_DONT_MASK); the daemon must not take further bits off, or group-writable
  // files in a shared directory could never be made. The process umask is not touched here:
  // it is the daemon's.
  const std::string f0 = at("u0"), f27 = at("u027"), d0 = at("d0");
  const Ids c = kind().caller;
  int rc = run_as(c.uid, c.gid, [&] {
    ::umask(0);
    int fd = ::open(f0.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0666);
    if (fd < 0) return errno;
    ::close(fd);
    if (::mkdir(d0.c_str(), 0777) != 0) return errno;
    ::umask(027);
    fd = ::open(f27.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0666);
    if (fd < 0) return errno;
    ::close(fd);
    return 0;
  });
  ASSERT_EQ(Err{rc}, kOk);
  EXPECT_EQ(disk_stat("u0").st_mode & 07777, 0666u) << "file made with umask 0";
  EXPECT_EQ(disk_stat("d0").st_mode & 07777, 0777u) << "directory made with umask 0";
  EXPECT_EQ(disk_stat("u027").st_mode & 07777, 0640u) << "file made with umask 027";
}

TEST_P(Posix, MkdirAndRmdir) {
  ASSERT_EQ(sys(::mkdir(at("d").c_str(), 0750)), kOk);
  EXPECT_TRUE(S_ISDIR(disk_stat("d").st_mode));
  EXPECT_EQ(disk_stat("d").st_mode & 07777, 0750u);
  EXPECT_EQ(sys(::mkdir(at("d").c_str(), 0755)), Err{EEXIST});
  ASSERT_EQ(make_file("d/x", "x"), kOk);
  EXPECT_EQ(sys(::rmdir(at("d").c_str())), Err{ENOTEMPTY});
  EXPECT_EQ(sys(::rmdir(at("d/x").c_str())), Err{ENOTDIR});
  EXPECT_EQ(disk_read("d/x"), "x");
  ASSERT_EQ(sys(::unlink(at("d/x").c_str())), kOk);
  ASSERT_EQ(sys(::rmdir(at("d").c_str())), kOk);
  EXPECT_EQ(disk_lstat_err("d"), Err{ENOENT});
  struct stat st {};
  EXPECT_EQ(sys(::lstat(at("d").c_str(), &st)), Err{ENOENT});
}

TEST_P(Posix, HardLinkCountsFollowLinkRenameUnlink) {
  ASSERT_EQ(make_file("a", "shared bytes"), kOk);
  ASSERT_EQ(sys(::link(at("a").c_str(), at("b").c_str())), kOk);
  EXPECT_EQ(shown("a").st_nlink, 2u);
  EXPECT_EQ(shown("b").st_nlink, 2u);
  EXPECT_EQ(shown("a").st_ino, shown("b").st_ino);
  EXPECT_EQ(disk_stat("a").st_nlink, 2u);
  EXPECT_EQ(disk_stat("a").st_ino, disk_stat("b").st_ino);

  ASSERT_EQ(sys(::rename(at("b").c_str(), at("c").c_str())), kOk);
  EXPECT_EQ(shown("c").st_nlink, 2u);
  EXPECT_EQ(disk_lstat_err("b"), Err{ENOENT});

  ASSERT_EQ(sys(::unlink(at("a").c_str())), kOk);
  EXPECT_EQ(shown("c").st_nlink, 1u);
  EXPECT_EQ(disk_stat("c").st_nlink, 1u);
  EXPECT_EQ(read_file(at("c")), "shared bytes");
}

TEST_P(Posix, SymlinkStoresTheLiteralTarget) {
  const std::string target = "some/../target with spaces";
  ASSERT_EQ(sys(::symlink(target.c_str(), at("l").c_str())), kOk);
  char buf[PATH_MAX];
  ssize_t n = ::readlink(at("l").c_str(), buf, sizeof(buf));
  ASSERT_GT(n, 0) << std::strerror(errno);
  EXPECT_EQ(std::string(buf, static_cast<size_t>(n)), target);
  struct stat st = shown("l");
  EXPECT_TRUE(S_ISLNK(st.st_mode));
  EXPECT_EQ(st.st_size, static_cast<off_t>(target.size()));
  FsIds root(0, 0);
  n = ::readlink(on_disk("l").c_str(), buf, sizeof(buf));
  ASSERT_GT(n, 0);
  EXPECT_EQ(std::string(buf, static_cast<size_t>(n)), target);
}

long rename2(const std::string& from, const std::string& to, unsigned flags) {
  return ::syscall(SYS_renameat2, AT_FDCWD, from.c_str(), AT_FDCWD, to.c_str(), flags);
}

TEST_P(Posix, RenameNoreplaceAndExchange) {
  ASSERT_EQ(make_file("a", "AAA"), kOk);
  ASSERT_EQ(make_file("b", "B"), kOk);
  EXPECT_EQ(sys(rename2(at("a"), at("b"), RENAME_NOREPLACE)), Err{EEXIST});
  EXPECT_EQ(disk_read("a"), "AAA");
  EXPECT_EQ(disk_read("b"), "B");

  ASSERT_EQ(sys(rename2(at("a"), at("b"), RENAME_EXCHANGE)), kOk);
  EXPECT_EQ(disk_read("a"), "B");
  EXPECT_EQ(disk_read("b"), "AAA");
  EXPECT_EQ(read_file(at("a")), "B");
  EXPECT_EQ(read_file(at("b")), "AAA");

  ASSERT_EQ(sys(rename2(at("a"), at("c"), RENAME_NOREPLACE)), kOk);
  EXPECT_EQ(disk_lstat_err("a"), Err{ENOENT});
  EXPECT_EQ(disk_read("c"), "B");
  EXPECT_EQ(sys(rename2(at("c"), at("missing"), RENAME_EXCHANGE)), Err{ENOENT});
}

TEST_P(Posix, UnlinkedOpenFileStaysReadableThroughItsFd) {
  ASSERT_EQ(make_file("f", "still here"), kOk);
  auto fd = open_fd(at("f"), O_RDWR);
  ASSERT_TRUE(fd) << std::strerror(errno);
  ASSERT_EQ(sys(::unlink(at("f").c_str())), kOk);
  EXPECT_EQ(pread_str(fd.get(), 100, 0), "still here");
  EXPECT_EQ(sys(::pwrite(fd.get(), "!", 1, 10)), kOk);
  EXPECT_EQ(pread_str(fd.get(), 100, 0), "still here!");
  struct stat st {};
  ASSERT_EQ(::fstat(fd.get(), &st), 0);
  EXPECT_EQ(st.st_nlink, 0u);
  fd.reset();
  auto names = list_dir(view_);
  EXPECT_EQ(std::count(names.begin(), names.end(), "f"), 0);
  EXPECT_EQ(sys(::lstat(at("f").c_str(), &st)), Err{ENOENT});
  EXPECT_EQ(disk_lstat_err("f"), Err{ENOENT});
}

TEST_P(Posix, SparseFileSeekDataAndHole) {
  auto fd = open_fd(at("sparse"), O_CREAT | O_RDWR, 0644);
  ASSERT_TRUE(fd) << std::strerror(errno);
  const off_t at_4m = 4 * kMiB;
  ASSERT_EQ(::pwrite(fd.get(), "x", 1, at_4m), 1);
  ASSERT_EQ(::fsync(fd.get()), 0);
  EXPECT_EQ(::lseek(fd.get(), 0, SEEK_HOLE), 0);
  EXPECT_EQ(::lseek(fd.get(), 0, SEEK_DATA), at_4m);
  EXPECT_EQ(::lseek(fd.get(), at_4m, SEEK_HOLE), at_4m + 1);  // the implicit hole at EOF
  EXPECT_EQ(sys(::lseek(fd.get(), at_4m + 1, SEEK_DATA)), Err{ENXIO});
  struct stat st {};
  ASSERT_EQ(::fstat(fd.get(), &st), 0);
  EXPECT_EQ(st.st_size, at_4m + 1);
  EXPECT_LT(st.st_blocks, 64) << "presented st_blocks of a 4 MiB sparse file";
  EXPECT_LT(disk_stat("sparse").st_blocks, 64);
  EXPECT_EQ(pread_str(fd.get(), 4, 1000), std::string(4, '\0'));
  fd.reset();
}

TEST_P(Posix, FallocateAllocatesKeepsSizeAndPunches) {
  auto fd = open_fd(at("f"), O_CREAT | O_RDWR, 0644);
  ASSERT_TRUE(fd) << std::strerror(errno);
  ASSERT_EQ(sys(::fallocate(fd.get(), 0, 0, kMiB)), kOk);
  EXPECT_EQ(disk_stat("f").st_size, kMiB);
  EXPECT_GE(disk_stat("f").st_blocks, kMiB / 512);
  struct stat st {};
  ASSERT_EQ(::fstat(fd.get(), &st), 0);
  EXPECT_EQ(st.st_size, kMiB);

  ASSERT_EQ(sys(::fallocate(fd.get(), FALLOC_FL_KEEP_SIZE, kMiB, kMiB)), kOk);
  EXPECT_EQ(disk_stat("f").st_size, kMiB);
  EXPECT_GE(disk_stat("f").st_blocks, 2 * kMiB / 512);

  ASSERT_EQ(::pwrite(fd.get(), "data", 4, 0), 4);
  ASSERT_EQ(sys(::fallocate(fd.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, kMiB)), kOk);
  EXPECT_EQ(disk_stat("f").st_size, kMiB);
  EXPECT_LE(disk_stat("f").st_blocks, kMiB / 512 + 8);  // only the kept-size tail remains
  EXPECT_EQ(pread_str(fd.get(), 4, 0), std::string(4, '\0'));
  fd.reset();
}

TEST_P(Posix, CopyFileRangeWithinTheView) {
  std::string src(64 * 1024, '\0');
  for (size_t i = 0; i < src.size(); ++i) src[i] = static_cast<char>('a' + i % 26);
  ASSERT_EQ(make_file("src", src), kOk);
  ASSERT_EQ(make_file("dst", "0123456789"), kOk);
  auto in = open_fd(at("src"), O_RDONLY);
  auto out = open_fd(at("dst"), O_WRONLY);
  ASSERT_TRUE(in);
  ASSERT_TRUE(out);
  loff_t off_in = 1000, off_out = 5;
  size_t left = 5000;
  while (left > 0) {
    ssize_t n = ::copy_file_range(in.get(), &off_in, out.get(), &off_out, left, 0);
    ASSERT_GT(n, 0) << std::strerror(errno);
    left -= static_cast<size_t>(n);
  }
  in.reset();
  out.reset();
  EXPECT_EQ(off_in, 6000);
  EXPECT_EQ(off_out, 5005);
  const std::string want = "01234" + src.substr(1000, 5000);
  EXPECT_EQ(disk_read("dst"), want);
  EXPECT_EQ(read_file(at("dst")), want);
}

bool same_time(const timespec& a, time_t sec, long nsec) {
  return a.tv_sec == sec && a.tv_nsec == nsec;
}

TEST_P(Posix, TimestampsExplicitNowOmitAndWrite) {
  ASSERT_EQ(make_file("f", "t"), kOk);
  const timespec set[2] = {{1000000000, 123456789}, {1500000000, 987654321}};
  ASSERT_EQ(sys(::utimensat(AT_FDCWD, at("f").c_str(), set, 0)), kOk);
  EXPECT_TRUE(same_time(shown("f").st_atim, 1000000000, 123456789));
  EXPECT_TRUE(same_time(shown("f").st_mtim, 1500000000, 987654321));
  EXPECT_TRUE(same_time(disk_stat("f").st_atim, 1000000000, 123456789));
  EXPECT_TRUE(same_time(disk_stat("f").st_mtim, 1500000000, 987654321));

  // UTIME_OMIT leaves atime alone while mtime changes.
  const timespec omit_atime[2] = {{0, UTIME_OMIT}, {1600000000, 0}};
  ASSERT_EQ(sys(::utimensat(AT_FDCWD, at("f").c_str(), omit_atime, 0)), kOk);
  EXPECT_TRUE(same_time(disk_stat("f").st_atim, 1000000000, 123456789));
  EXPECT_TRUE(same_time(disk_stat("f").st_mtim, 1600000000, 0));
  EXPECT_TRUE(same_time(shown("f").st_mtim, 1600000000, 0));

  // UTIME_NOW for mtime only.
  const time_t before = ::time(nullptr);
  const timespec now_mtime[2] = {{0, UTIME_OMIT}, {0, UTIME_NOW}};
  ASSERT_EQ(sys(::utimensat(AT_FDCWD, at("f").c_str(), now_mtime, 0)), kOk);
  EXPECT_GE(disk_stat("f").st_mtim.tv_sec, before - 1);
  EXPECT_LE(disk_stat("f").st_mtim.tv_sec, ::time(nullptr) + 1);
  EXPECT_GE(shown("f").st_mtim.tv_sec, before - 1);
  EXPECT_TRUE(same_time(disk_stat("f").st_atim, 1000000000, 123456789));

  // On an open file (setattr with a file handle), then a write moves mtime.
  auto fd = open_fd(at("f"), O_WRONLY);
  ASSERT_TRUE(fd);
  const timespec old_mtime[2] = {{0, UTIME_OMIT}, {1234, 0}};
  ASSERT_EQ(sys(::futimens(fd.get(), old_mtime)), kOk);
  EXPECT_TRUE(same_time(disk_stat("f").st_mtim, 1234, 0));
  EXPECT_TRUE(same_time(shown("f").st_mtim, 1234, 0));
  ASSERT_EQ(::pwrite(fd.get(), "w", 1, 0), 1);
  fd.reset();
  EXPECT_GE(disk_stat("f").st_mtim.tv_sec, before - 1);
  EXPECT_GE(shown("f").st_mtim.tv_sec, before - 1);
}

// A data view keeps set-uid and set-gid bits as a disk does, but a regular file never holds
// them on the disk: they are in its record (fuse/setid_bits.hpp), which only a daemon with
// CAP_SYS_ADMIN writes (the rootless lane's strips them). A shared view strips them.
TEST_P(Posix, SetIdBitsAreKeptWhereTheViewSaysButNeverOnADiskFile) {
  const bool dirs = kind().setid_kept;
  const bool files = dirs && ::geteuid() == 0;
  ASSERT_EQ(make_file("f", "x"), kOk);
  for (const mode_t mode : {04755, 02755, 06755}) {
    ASSERT_EQ(sys(::chmod(at("f").c_str(), mode)), kOk);
    EXPECT_EQ(disk_stat("f").st_mode & 06000, 0u) << "set-id on disk, chmod " << std::oct << mode;
    EXPECT_EQ(disk_stat("f").st_mode & 0777, 0755u);
    EXPECT_EQ(shown("f").st_mode & 07777, files ? mode : 0755u) << "presented, chmod " << std::oct << mode;
  }
  ASSERT_EQ(sys(::chmod(at("f").c_str(), 0640)), kOk);
  EXPECT_EQ(disk_stat("f").st_mode & 07777, 0640u);
  EXPECT_EQ(shown("f").st_mode & 07777, 0640u);

  // A create asking for set-uid.
  auto fd = open_fd(at("g"), O_CREAT | O_WRONLY, 04755);
  ASSERT_TRUE(fd) << std::strerror(errno);
  fd.reset();
  EXPECT_EQ(disk_stat("g").st_mode & 06000, 0u);
  EXPECT_EQ(shown("g").st_mode & 07777, files ? 04755u : 0755u);

  ASSERT_EQ(sys(::mkdir(at("d").c_str(), 0775)), kOk);
  ASSERT_EQ(sys(::chmod(at("d").c_str(), 06775)), kOk);
  const mode_t want = dirs ? 06775 : 0775;
  EXPECT_EQ(disk_stat("d").st_mode & 07777, want) << "directory on disk";
  EXPECT_EQ(shown("d").st_mode & 07777, want) << "directory presented";
}

// A view never shows set-uid or set-gid on a file, but the host may leave them on disk. The
// daemon clears them before an app can change the file (the kernel leaves it to the daemon,
// FUSE_HANDLE_KILLPRIV_V2; a passed-through write is root's on the backing file, which keeps
// them): at an open for writing, before any write, and at a truncation. Reading leaves them.
TEST_P(Posix, SetIdBitsTheHostLeftAreClearedBeforeAnAppChangesTheFile) {
  ASSERT_EQ(make_file("f", "x"), kOk);
  const auto host_sets_them = [&] {
    FsIds root(0, 0);
    ASSERT_EQ(::chmod(on_disk("f").c_str(), 06777), 0);
  };
  ASSERT_NO_FATAL_FAILURE(host_sets_them());
  EXPECT_TRUE(open_fd(at("f"), O_RDONLY));
  EXPECT_EQ(disk_stat("f").st_mode & 07777, 06777u) << "a read";

  auto fd = open_fd(at("f"), O_WRONLY);
  ASSERT_TRUE(fd) << std::strerror(errno);
  EXPECT_EQ(disk_stat("f").st_mode & 07777, 0777u) << "an open for writing";
  ASSERT_NO_FATAL_FAILURE(host_sets_them());
  ASSERT_EQ(sys(::ftruncate(fd.get(), 0)), kOk);
  EXPECT_EQ(disk_stat("f").st_mode & 07777, 0777u) << "ftruncate";
  fd.reset();

  ASSERT_NO_FATAL_FAILURE(host_sets_them());
  ASSERT_EQ(sys(::truncate(at("f").c_str(), 1)), kOk);
  EXPECT_EQ(disk_stat("f").st_mode & 07777, 0777u) << "truncate by name";
}

TEST_P(Posix, ChownToAMappedIdLandsOnDiskMapped) {
  ASSERT_EQ(make_file("f", "x"), kOk);
  FsIds root(0, 0);  // giving a file away needs CAP_CHOWN
  ASSERT_EQ(::lchown(on_disk("f").c_str(), 7, 7), 0);  // so the chown below has to change it
  const Ids to = kind().chown_to;
  ASSERT_EQ(sys(::chown(at("f").c_str(), to.uid, to.gid)), kOk);
  expect_owner(disk_stat("f"), kind().chown_disk, "on disk");
  expect_owner(shown("f"), to, "presented");
}

TEST_P(Posix, ChownToAnUnmappedIdIsEinval) {
  ASSERT_EQ(make_file("f", "x"), kOk);
  FsIds root(0, 0);
  if (!kind().unmapped) {
    // An identity map covers every id: even one far outside any container range lands as is.
    ASSERT_EQ(sys(::chown(at("f").c_str(), 4000000000u, 4000000000u)), kOk);
    expect_owner(disk_stat("f"), {4000000000u, 4000000000u}, "identity chown on disk");
    return;
  }
  const uint32_t bad = *kind().unmapped;
  EXPECT_EQ(sys(::chown(at("f").c_str(), bad, static_cast<gid_t>(-1))), Err{EINVAL});
  EXPECT_EQ(sys(::chown(at("f").c_str(), static_cast<uid_t>(-1), bad)), Err{EINVAL});
  expect_owner(disk_stat("f"), kind().caller_disk, "unchanged on disk");
}

std::vector<std::string> xattr_names(const std::string& path) {
  std::vector<char> buf(4096);
  ssize_t n = ::llistxattr(path.c_str(), buf.data(), buf.size());
  std::vector<std::string> names;
  for (ssize_t i = 0; i < n;) {
    names.emplace_back(buf.data() + i);
    i += static_cast<ssize_t>(names.back().size()) + 1;
  }
  std::sort(names.begin(), names.end());
  return names;
}

std::optional<std::string> xattr_value(const std::string& path, const char* name) {
  char buf[256];
  ssize_t n = ::lgetxattr(path.c_str(), name, buf, sizeof(buf));
  if (n < 0) return std::nullopt;
  return std::string(buf, static_cast<size_t>(n));
}

TEST_P(Posix, UserXattrsSetGetListRemove) {
  ASSERT_EQ(make_file("f", "x"), kOk);
  ASSERT_EQ(sys(::setxattr(at("f").c_str(), "user.k", "v1", 2, 0)), kOk);
  EXPECT_EQ(xattr_value(at("f"), "user.k"), "v1");
  EXPECT_EQ(sys(::setxattr(at("f").c_str(), "user.k", "v2", 2, XATTR_CREATE)), Err{EEXIST});
  ASSERT_EQ(sys(::setxattr(at("f").c_str(), "user.k", "v2", 2, XATTR_REPLACE)), kOk);
  EXPECT_EQ(xattr_names(at("f")), std::vector<std::string>{"user.k"});
  {
    FsIds root(0, 0);
    EXPECT_EQ(xattr_value(on_disk("f"), "user.k"), "v2");
  }
  ASSERT_EQ(sys(::removexattr(at("f").c_str(), "user.k")), kOk);
  char buf[16];
  EXPECT_EQ(sys(::getxattr(at("f").c_str(), "user.k", buf, sizeof(buf))), Err{ENODATA});
  FsIds root(0, 0);
  EXPECT_EQ(xattr_value(on_disk("f"), "user.k"), std::nullopt);
}

TEST_P(Posix, TrustedAndSecurityXattrsAreRefusedAndHidden) {
  ASSERT_EQ(make_file("f", "x"), kOk);
  ASSERT_EQ(sys(::setxattr(at("f").c_str(), "user.k", "v", 1, 0)), kOk);
  // As root, so the kernel's own CAP_SYS_ADMIN check passes and the daemon decides.
  FsIds root(0, 0);
  EXPECT_EQ(sys(::setxattr(at("f").c_str(), "trusted.k", "v", 1, 0)), Err{EPERM});
  EXPECT_EQ(sys(::setxattr(at("f").c_str(), "security.k", "v", 1, 0)), Err{EPERM});
  EXPECT_EQ(xattr_value(on_disk("f"), "trusted.k"), std::nullopt);
  EXPECT_EQ(xattr_value(on_disk("f"), "security.k"), std::nullopt);

  // A trusted.* attribute the host set is neither listed nor readable through the view.
  ASSERT_EQ(sys(::lsetxattr(on_disk("f").c_str(), "trusted.hidden", "h", 1, 0)), kOk);
  EXPECT_EQ(xattr_names(at("f")), std::vector<std::string>{"user.k"});
  char buf[16];
  EXPECT_EQ(sys(::getxattr(at("f").c_str(), "trusted.hidden", buf, sizeof(buf))), Err{ENODATA});
  EXPECT_EQ(sys(::removexattr(at("f").c_str(), "trusted.hidden")), Err{EPERM});
  EXPECT_EQ(xattr_value(on_disk("f"), "trusted.hidden"), "h");
}

TEST_P(Posix, ReaddirListsAThousandEntries) {
  std::vector<std::string> want = {".", ".."};
  for (int i = 0; i < 1000; ++i) {
    char name[16];
    std::snprintf(name, sizeof(name), "e%04d", i);
    ASSERT_EQ(make_file(name, ""), kOk) << name;
    want.emplace_back(name);
  }
  std::sort(want.begin(), want.end());
  EXPECT_EQ(list_dir(view_), want);
}

TEST_P(Posix, NamesOf255BytesWorkAnd256AreTooLong) {
  const std::string ok(255, 'n');
  ASSERT_EQ(make_file(ok, "long"), kOk);
  EXPECT_EQ(disk_read(ok), "long");
  EXPECT_EQ(list_dir(view_).size(), 3u);
  const std::string bad(256, 'n');
  EXPECT_EQ(make_file(bad, ""), Err{ENAMETOOLONG});
  EXPECT_EQ(sys(::mkdir(at(bad).c_str(), 0755)), Err{ENAMETOOLONG});
  struct stat st {};
  EXPECT_EQ(sys(::lstat(at(bad).c_str(), &st)), Err{ENAMETOOLONG});
}

TEST_P(Posix, PathsUpToPathMaxWorkThroughDirFds) {
  // A relative path of PATH_MAX - 1 bytes below the view: 20 directories of 200 bytes, then
  // a leaf making up the rest. The daemon sees one name per request, never the path.
  const std::string dir_name(200, 'd');
  const size_t dirs = 20;
  const std::string leaf(PATH_MAX - 1 - dirs * (dir_name.size() + 1), 'f');
  std::string rel;
  for (size_t i = 0; i < dirs; ++i) rel += dir_name + "/";
  rel += leaf;
  ASSERT_EQ(rel.size(), static_cast<size_t>(PATH_MAX - 1));

  auto root = open_fd(view_, O_RDONLY | O_DIRECTORY);
  ASSERT_TRUE(root);
  common::UniqueFd dfd(::dup(root.get()));
  for (size_t i = 0; i < dirs; ++i) {
    ASSERT_EQ(sys(::mkdirat(dfd.get(), dir_name.c_str(), 0755)), kOk) << "depth " << i;
    auto next = openat_fd(dfd.get(), dir_name, O_RDONLY | O_DIRECTORY);
    ASSERT_TRUE(next) << "depth " << i << ": " << std::strerror(errno);
    dfd = std::move(next);
  }
  auto fd = openat_fd(dfd.get(), leaf, O_CREAT | O_WRONLY, 0644);
  ASSERT_TRUE(fd) << std::strerror(errno);
  ASSERT_TRUE(write_all(fd.get(), "deep"));
  fd.reset();
  dfd.reset();

  // The whole relative path in one openat from the view root (PATH_MAX with its NUL).
  fd = openat_fd(root.get(), rel, O_RDONLY);
  ASSERT_TRUE(fd) << std::strerror(errno);
  EXPECT_EQ(pread_str(fd.get(), 16, 0), "deep");
  fd.reset();
  root.reset();

  // The absolute path through the mount is longer than PATH_MAX: the kernel refuses it.
  EXPECT_EQ(open_err(at(rel), O_RDONLY), Err{ENAMETOOLONG});

  // And the bytes are on disk at the same depth.
  FsIds as_root(0, 0);
  auto bfd = open_fd(backing_, O_RDONLY | O_DIRECTORY);
  ASSERT_TRUE(bfd);
  fd = openat_fd(bfd.get(), rel, O_RDONLY);
  ASSERT_TRUE(fd) << std::strerror(errno);
  EXPECT_EQ(pread_str(fd.get(), 16, 0), "deep");
  fd.reset();
  bfd.reset();
}

struct flock write_lock() {
  struct flock l {};
  l.l_type = F_WRLCK;
  l.l_whence = SEEK_SET;
  l.l_start = 0;
  l.l_len = 10;
  return l;
}

TEST_P(Posix, FlockAndFcntlLocksConflictAcrossOpenFileDescriptions) {
  ASSERT_EQ(make_file("f", "0123456789"), kOk);
  auto fd1 = open_fd(at("f"), O_RDWR);
  auto fd2 = open_fd(at("f"), O_RDWR);
  ASSERT_TRUE(fd1);
  ASSERT_TRUE(fd2);

  ASSERT_EQ(sys(::flock(fd1.get(), LOCK_EX | LOCK_NB)), kOk);
  EXPECT_EQ(sys(::flock(fd2.get(), LOCK_EX | LOCK_NB)), Err{EWOULDBLOCK});
  ASSERT_EQ(sys(::flock(fd1.get(), LOCK_UN)), kOk);
  EXPECT_EQ(sys(::flock(fd2.get(), LOCK_SH | LOCK_NB)), kOk);
  ASSERT_EQ(sys(::flock(fd2.get(), LOCK_UN)), kOk);

  // Open-file-description locks conflict within one process.
  struct flock l = write_lock();
  ASSERT_EQ(sys(::fcntl(fd1.get(), F_OFD_SETLK, &l)), kOk);
  l = write_lock();
  EXPECT_EQ(sys(::fcntl(fd2.get(), F_OFD_SETLK, &l)), Err{EAGAIN});
  l = write_lock();
  l.l_type = F_UNLCK;
  ASSERT_EQ(sys(::fcntl(fd1.get(), F_OFD_SETLK, &l)), kOk);

  // Process-owned POSIX locks conflict with another process's open of the file.
  l = write_lock();
  ASSERT_EQ(sys(::fcntl(fd1.get(), F_SETLK, &l)), kOk);
  const std::string f = at("f");
  const Ids c = kind().caller;
  int rc = run_as(c.uid, c.gid, [&] {
    int fd = ::open(f.c_str(), O_RDWR | O_CLOEXEC);
    if (fd < 0) return 100;
    struct flock cl = write_lock();
    return ::fcntl(fd, F_SETLK, &cl) == 0 ? 0 : errno;
  });
  EXPECT_EQ(Err{rc}, Err{EAGAIN});
  fd1.reset();
  fd2.reset();
}

TEST_P(Posix, StatfsReportsTheBackingFileSystem) {
  struct statvfs via {}, disk {};
  ASSERT_EQ(sys(::statvfs(view_.c_str(), &via)), kOk);
  {
    FsIds root(0, 0);
    ASSERT_EQ(::statvfs(backing_.c_str(), &disk), 0);
  }
  EXPECT_EQ(via.f_bsize, disk.f_bsize);
  EXPECT_EQ(via.f_blocks, disk.f_blocks);
  EXPECT_EQ(via.f_files, disk.f_files);
  EXPECT_EQ(via.f_namemax, 255u);
}

TEST_P(Posix, FsyncAndFdatasyncSucceed) {
  auto fd = open_fd(at("f"), O_CREAT | O_RDWR, 0644);
  ASSERT_TRUE(fd);
  ASSERT_TRUE(write_all(fd.get(), "durable"));
  EXPECT_EQ(sys(::fsync(fd.get())), kOk);
  EXPECT_EQ(sys(::fdatasync(fd.get())), kOk);
  fd.reset();
  auto dfd = open_fd(view_, O_RDONLY | O_DIRECTORY);
  ASSERT_TRUE(dfd);
  EXPECT_EQ(sys(::fsync(dfd.get())), kOk);
  dfd.reset();
  EXPECT_EQ(disk_read("f"), "durable");
}

TEST_P(Posix, OpenWithOTruncTruncates) {
  ASSERT_EQ(make_file("f", "abcdef"), kOk);
  auto fd = open_fd(at("f"), O_WRONLY | O_TRUNC);
  ASSERT_TRUE(fd) << std::strerror(errno);
  EXPECT_EQ(disk_stat("f").st_size, 0);  // at open, not at close
  struct stat st {};
  ASSERT_EQ(::fstat(fd.get(), &st), 0);
  EXPECT_EQ(st.st_size, 0);
  fd.reset();
  EXPECT_EQ(read_file(at("f")), "");
}

// O_DIRECT through both kinds of open (OPEN of an existing file, CREATE of a new one) and a
// write-only open: the kernel sends such reads and writes on as they come, from the caller's
// aligned buffers to wherever the daemon's request buffer puts them, and every view must
// still do them (ops_file.cpp, reopen_flags). What is written is on disk at once, and what is
// read is what is on disk.
TEST_P(Posix, ODirectBlocksAreWrittenReadBackAndOnDisk) {
  constexpr size_t kBlock = 4096;
  const AlignedBlock out = aligned_block(kBlock, 'd');
  const AlignedBlock in = aligned_block(kBlock, '\0');
  const std::string_view written(out.get(), kBlock);
  ASSERT_EQ(make_file("opened", ""), kOk);
  ASSERT_EQ(make_file("write-only", ""), kOk);
  const std::pair<const char*, int> opens[] = {
      {"opened", O_RDWR}, {"created", O_RDWR | O_CREAT | O_EXCL}, {"write-only", O_WRONLY}};
  for (const auto& [rel, flags] : opens) {
    SCOPED_TRACE(rel);
    auto fd = open_fd(at(rel), flags | O_DIRECT, 0644);
    ASSERT_TRUE(fd) << std::strerror(errno);
    EXPECT_EQ(::pwrite(fd.get(), out.get(), kBlock, 0), static_cast<ssize_t>(kBlock))
        << std::strerror(errno);
    if ((flags & O_ACCMODE) != O_WRONLY) {
      EXPECT_EQ(::pread(fd.get(), in.get(), kBlock, 0), static_cast<ssize_t>(kBlock))
          << std::strerror(errno);
      EXPECT_TRUE(std::string_view(in.get(), kBlock) == written) << "read back other bytes";
      // Past the kernel's page cache: a change made on the host shows at once.
      const std::string host(kBlock, 'h');
      {
        FsIds root(0, 0);
        auto disk = open_fd(on_disk(rel), O_WRONLY);
        ASSERT_EQ(::pwrite(disk.get(), host.data(), kBlock, 0), static_cast<ssize_t>(kBlock));
      }
      EXPECT_EQ(::pread(fd.get(), in.get(), kBlock, 0), static_cast<ssize_t>(kBlock));
      EXPECT_TRUE(std::string_view(in.get(), kBlock) == host) << "read the kernel's cached page";
      ASSERT_EQ(::pwrite(fd.get(), out.get(), kBlock, 0), static_cast<ssize_t>(kBlock));
    }
    fd.reset();
    const std::string disk = disk_read(rel);
    EXPECT_TRUE(disk == written) << disk.size() << " bytes on disk, not the block written";
  }
}

TEST_P(Posix, SetgidDirectoryGivesItsGroupOnlyInDataViews) {
  ASSERT_EQ(sys(::mkdir(at("g").c_str(), 0777)), kOk);
  {
    FsIds root(0, 0);  // a group the caller is not in, and the bit, set as the host would
    ASSERT_EQ(sys(::chown(at("g").c_str(), static_cast<uid_t>(-1), kind().chown_to.gid)), kOk);
    ASSERT_EQ(sys(::chmod(at("g").c_str(), 02777)), kOk);
  }
  const bool kept = kind().setid_kept;
  EXPECT_EQ((disk_stat("g").st_mode & S_ISGID) != 0, kept);
  EXPECT_EQ((shown("g").st_mode & S_ISGID) != 0, kept);

  ASSERT_EQ(make_file("g/f", "x"), kOk);
  ASSERT_EQ(sys(::mkdir(at("g/sub").c_str(), 0755)), kOk);
  const gid_t want = kept ? kind().chown_disk.gid : kind().caller_disk.gid;
  EXPECT_EQ(disk_stat("g/f").st_gid, want);
  EXPECT_EQ(disk_stat("g/sub").st_gid, want);
  EXPECT_EQ((disk_stat("g/sub").st_mode & S_ISGID) != 0, kept);
  if (kept) {
    EXPECT_EQ(shown("g/f").st_gid, kind().chown_to.gid);
  }
}

INSTANTIATE_TEST_SUITE_P(EveryWritableKind, Posix,
                         ::testing::ValuesIn(writable_kinds()),
                         [](const ::testing::TestParamInfo<KindCase>& p) { return name_of(p.param); });

// A caller the view's map does not cover has no owner to create files as: EOVERFLOW, as an
// idmapped mount answers. Root on the host is such a caller for a container's range map.
TEST(PosixUnmappedCaller, CannotCreateInARangeMappedView) {
  MountedFs m;
  PORTALFS_REQUIRE_MOUNT(m);
  const std::string v = m.add_view("app", ViewKind::shared_map, "v");
  EXPECT_EQ(open_err(v + "/f", O_CREAT | O_WRONLY, 0644),
            Err{EOVERFLOW});
  EXPECT_EQ(sys(::mkdir((v + "/d").c_str(), 0755)), Err{EOVERFLOW});
  EXPECT_EQ(sys(::symlink("x", (v + "/l").c_str())), Err{EOVERFLOW});
  EXPECT_TRUE(list_dir(m.views().back().backing).size() == 2u);
}

}  // namespace
}  // namespace portalfs::testutil
