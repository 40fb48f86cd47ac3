// SPDX-License-Identifier: MIT
// portalfs over GlusterFS (issue 17): two portalfsd nodes, each over its own client mount of
// one volume, serve the same storage root. scripts/test-gluster makes the volume and mounts
// and passes them in:
//   PORTALFS_GLUSTER_A, PORTALFS_GLUSTER_B  two client mounts of the volume
//   PORTALFS_GLUSTER_VOLUME                  its name (the brick fault test asks gluster)
// Each test works in its own directory on the volume (removed at teardown) with its own
// mountpoints, sockets and state directories, and stops the daemons it started by pid.
#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <random>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/fs_helpers.hpp"
#include "tests/testutil/container_user.hpp"
#include "tests/testutil/process.hpp"
#include "tests/testutil/temp_dir.hpp"

namespace portalfs::testutil {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

// How late a change made through one node may show through the other: the views' 1 s
// attribute and entry timeouts (fuse/backing_fs.hpp) plus GlusterFS's own md-cache (1 s by
// default), with room for a loaded machine.
constexpr auto kCrossNode = 5s;

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

bool is_mounted(const std::string& path) {
  std::ifstream in("/proc/self/mounts");
  std::string dev, mnt, rest;
  while (in >> dev >> mnt && std::getline(in, rest)) {
    if (mnt == path) return true;
  }
  return false;
}

// One portalfsd: its own mountpoint, socket and state directory (local), over `client`'s
// view of the shared storage root.
struct Node {
  std::string name;
  fs::path dir;      // local: mnt, state, sock, log
  fs::path storage;  // on the volume, through this node's client mount
  std::unique_ptr<Child> daemon;
  bool shared_state = false;  // --shared-state on

  [[nodiscard]] std::string mnt() const { return dir / "mnt"; }
  [[nodiscard]] std::string sock() const { return dir / "sock"; }
  [[nodiscard]] std::string log() const { return dir / "daemon.log"; }
  [[nodiscard]] std::string data(const std::string& app) const { return mnt() + "/apps/" + app + "/data/data"; }
  [[nodiscard]] std::string share(const std::string& app, const std::string& s) const {
    return mnt() + "/apps/" + app + "/shared/" + s;
  }

  CommandResult ctl(std::vector<std::string> args) const {
    args.insert(args.begin(), {program("portalctl"), "--socket", sock()});
    return run_command(args);
  }
  void start() {
    fs::create_directories(dir / "state");
    daemon = std::make_unique<Child>(
        std::vector<std::string>{program("portalfsd"), "--foreground", "--storage-root", storage, "--mountpoint",
                                 mnt(), "--state-dir", dir / "state", "--socket", sock(), "--shared-state",
                                 shared_state ? "on" : "off"},
        log());
    ASSERT_TRUE(wait_until([&] { return ctl({"status"}).code == 0; }, 20s))
        << name << ": portalfsd did not come up:\n" << read_file(log());
  }
  void stop() {
    if (daemon && !daemon->exited()) daemon->stop(SIGTERM, 30s);
    daemon.reset();
    if (is_mounted(mnt())) ::umount2(mnt().c_str(), MNT_DETACH);
  }
};

class Gluster : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string a = env("PORTALFS_GLUSTER_A"), b = env("PORTALFS_GLUSTER_B");
    if (a.empty() || b.empty() || !is_mounted(a) || !is_mounted(b)) {
      FAIL() << "needs two client mounts of one GlusterFS volume in PORTALFS_GLUSTER_A and "
                "PORTALFS_GLUSTER_B (run scripts/test-gluster)";
    }
    // A directory of this test's own on the volume: both nodes' storage root.
    sub_ = "pfs-test-" + std::to_string(std::random_device{}());
    ASSERT_TRUE(fs::create_directory(fs::path(a) / sub_));
    a_.name = "A";
    a_.dir = tmp_ / "a";
    a_.storage = fs::path(a) / sub_ / "storage";
    b_.name = "B";
    b_.dir = tmp_ / "b";
    b_.storage = fs::path(b) / sub_ / "storage";
    volume_dir_ = fs::path(a) / sub_;
  }
  void TearDown() override {
    for (Node* n : {&a_, &b_}) {
      if (HasFailure() && fs::exists(n->log())) std::cerr << "--- node " << n->name << " log:\n" << read_file(n->log());
      n->stop();
    }
    if (!volume_dir_.empty()) {
      std::error_code ec;
      fs::remove_all(volume_dir_, ec);
    }
  }
  /// Writes an app manifest (data dir /data; each share at /<name>) and installs it on `node`.
  void install(Node& node, const std::string& app, const std::vector<std::pair<std::string, std::string>>& shares) {
    std::string shared;
    for (const auto& [name, access] : shares) {
      create_share(node, name);
      if (!shared.empty()) shared += ", ";
      shared += R"({"name": ")" + name + R"(", "path": "/)" + name + R"(", "access": ")" + access + R"("})";
    }
    const std::string file = tmp_ / (app + "-" + node.name + ".json");
    write_file(file, R"({"name": ")" + app + R"(", "v": "1", "data_dirs": ["/data"], "shared_dirs": [)" + shared + "]}");
    const auto r = node.ctl({"app", "install", file});
    ASSERT_EQ(r.code, 0) << node.name << " " << app << ": " << r.err;
  }
  /// Creates share `name` on `node` unless that node knows it already (the default shares,
  /// one made on the other node and shared, or made by an earlier install).
  static void create_share(Node& node, const std::string& name) {
    if (std::regex_search(node.ctl({"share", "list"}).out, std::regex("(^|\\n)" + name + "\\b"))) return;
    const auto r = node.ctl({"share", "create", name});
    ASSERT_EQ(r.code, 0) << node.name << " share " << name << ": " << r.err;
  }
  /// The backing file of `rel` below the storage root, as client mount A shows it.
  std::string backing(const std::string& rel) const { return a_.storage / rel; }

  TempDir tmp_{"portalfs-gluster"};
  Node a_, b_;
  std::string sub_;
  fs::path volume_dir_;
};

std::string slurp(const std::string& path) {
  try {
    return read_file(path);
  } catch (const std::exception&) {
    return "<unreadable>";
  }
}

// ---- one node: views over the volume work and enforce as over a local root ----

TEST_F(Gluster, NodeLogsOneLinePerFallback) {
  ASSERT_NO_FATAL_FAILURE(a_.start());
  const std::string log = read_file(a_.log());
  EXPECT_NE(log.find("storage root on fuse.glusterfs: its file handles go stale"), std::string::npos) << log;
  EXPECT_NE(log.find("storage root on fuse.glusterfs: no fanotify file system mark"), std::string::npos) << log;
  EXPECT_NE(log.find("storage root on fuse.glusterfs: no kernel passthrough"), std::string::npos) << log;
  EXPECT_NE(log.find("storage root on fuse.glusterfs: each open of a view's directory keeps its listing's stream"),
            std::string::npos)
      << log;
  const auto status = a_.ctl({"status"});
  EXPECT_NE(status.out.find("filesystem.passthrough: false"), std::string::npos) << status.out;
}

TEST_F(Gluster, DataViewCreateWriteRenameUnlinkReachTheVolume) {
  ASSERT_NO_FATAL_FAILURE(a_.start());
  ASSERT_NO_FATAL_FAILURE(install(a_, "notes", {}));
  const std::string v = a_.data("notes");
  write_file(v + "/f.txt", "hello gluster\n");
  EXPECT_EQ(read_file(v + "/f.txt"), "hello gluster\n");
  EXPECT_EQ(read_file(backing("apps/notes/data/f.txt")), "hello gluster\n");
  ASSERT_EQ(sys(::mkdir((v + "/sub").c_str(), 0755)), kOk);
  ASSERT_EQ(sys(::rename((v + "/f.txt").c_str(), (v + "/sub/g.txt").c_str())), kOk);
  EXPECT_FALSE(fs::exists(backing("apps/notes/data/f.txt")));
  EXPECT_EQ(read_file(backing("apps/notes/data/sub/g.txt")), "hello gluster\n");
  // Overwrite in place through a kept-open fd (a passthrough file), then unlink.
  {
    auto fd = open_fd(v + "/sub/g.txt", O_WRONLY | O_TRUNC);
    ASSERT_TRUE(fd);
    ASSERT_TRUE(write_all(fd.get(), "second\n"));
  }
  EXPECT_EQ(read_file(backing("apps/notes/data/sub/g.txt")), "second\n");
  ASSERT_EQ(sys(::unlink((v + "/sub/g.txt").c_str())), kOk);
  EXPECT_FALSE(fs::exists(backing("apps/notes/data/sub/g.txt")));
  EXPECT_EQ(sys(::rmdir((v + "/sub").c_str())), kOk);
}

// Every open is served by the daemon (fuse/backing_fs.hpp: no kernel passthrough over a FUSE
// storage root), reads with their pages kept across opens; readers and writers see each other's
// bytes, and so does the volume.
TEST_F(Gluster, DataViewOpensAreServed) {
  ASSERT_NO_FATAL_FAILURE(a_.start());
  ASSERT_NO_FATAL_FAILURE(install(a_, "notes", {}));
  const std::string v = a_.data("notes");
  auto passthrough_files = [&]() -> long {
    std::smatch m;
    const std::string out = a_.ctl({"status"}).out;
    return std::regex_search(out, m, std::regex("passthrough_files: (\\d+)")) ? std::stol(m[1]) : -1;
  };
  write_file(v + "/db", "row 1\n");
  {
    auto r = open_fd(v + "/db", O_RDONLY);
    ASSERT_TRUE(r);
    EXPECT_EQ(pread_str(r.get(), 100, 0), "row 1\n");
    auto w = open_fd(v + "/db", O_WRONLY | O_APPEND);
    ASSERT_TRUE(w);
    EXPECT_EQ(passthrough_files(), 0) << "an open passed through";
    ASSERT_TRUE(write_all(w.get(), "row 2\n"));
    EXPECT_EQ(pread_str(r.get(), 100, 0), "row 1\nrow 2\n");
  }
  EXPECT_EQ(read_file(v + "/db"), "row 1\nrow 2\n");
  EXPECT_EQ(read_file(backing("apps/notes/data/db")), "row 1\nrow 2\n");
}

// Set-id bits kept in a record (fuse/setid_bits.hpp) over the volume: trusted.* xattrs reach
// the bricks, the volume's file holds no set-id bit, and the other node shows them too.
TEST_F(Gluster, SetIdBitsAreKeptOnTheVolumeAsARecord) {
  ASSERT_NO_FATAL_FAILURE(a_.start());
  ASSERT_NO_FATAL_FAILURE(b_.start());
  ASSERT_NO_FATAL_FAILURE(install(a_, "tools", {}));
  ASSERT_NO_FATAL_FAILURE(install(b_, "tools", {}));  // the same app, on node B too
  const std::string f = a_.data("tools") + "/sudo";
  write_file(f, "#!/bin/sh\n");
  ASSERT_EQ(sys(::chmod(f.c_str(), 04755)), kOk);
  struct stat st {};
  ASSERT_TRUE(Lstat(f, &st));
  EXPECT_EQ(st.st_mode & 07777, 04755u);
  ASSERT_TRUE(Lstat(backing("apps/tools/data/sudo"), &st));
  EXPECT_EQ(st.st_mode & 07777, static_cast<mode_t>(S_ISVTX | 0755)) << "the marker, no set-uid";
  char record[16];
  const ssize_t len = ::lgetxattr(backing("apps/tools/data/sudo").c_str(), "trusted.portalfs.mode", record, sizeof(record));
  EXPECT_EQ(std::string(record, static_cast<size_t>(std::max<ssize_t>(len, 0))), "4000");
  const std::string on_b = b_.data("tools") + "/sudo";
  const auto deadline = std::chrono::steady_clock::now() + kCrossNode;
  while ((::lstat(on_b.c_str(), &st) != 0 || (st.st_mode & 07777) != 04755) &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(100ms);
  }
  EXPECT_EQ(st.st_mode & 07777, 04755u) << "through node B";
}

// An app that is not the owner of a share's files on the volume (they are the share owner's,
// root's): its container root (host uid 100000) creates a file in a read-write share, writes it,
// and opens it again for reading and writing. The view allows all of it; with kernel
// passthrough, the kernel's own open of the backing file carried uid 100000 to GlusterFS, which
// refused it: every such open failed with EIO (found by bench/run's gl-shared rows).
TEST_F(Gluster, AShareWorksForAnAppTheVolumeDoesNotKnowAsItsOwner) {
  ASSERT_NO_FATAL_FAILURE(a_.start());
  ASSERT_NO_FATAL_FAILURE(create_share(a_, "docs"));
  const std::string file = tmp_ / "mapped.json";
  write_file(file, R"({"name": "mapped", "v": "1", "data_dirs": ["/data"],
                       "shared_dirs": [{"name": "docs", "path": "/docs", "access": "read-write"}]})");
  const auto r = a_.ctl({"app", "install", file, "--uid-map", "0:100000:65536", "--gid-map", "0:100000:65536"});
  ASSERT_EQ(r.code, 0) << r.err;
  const std::string f = a_.share("mapped", "docs") + "/new";
  ASSERT_EQ(::chmod(tmp_.path().c_str(), 0755), 0);  // the app's user reaches the mount through here
  ASSERT_EQ(::chmod(a_.dir.c_str(), 0755), 0);
  const int rc = testutil::as_container_user(a_.mnt(), 100000, 100000, [&]() -> int {
    for (const int flags : {O_WRONLY | O_CREAT | O_TRUNC, O_RDWR}) {
      const int fd = ::open(f.c_str(), flags, 0644);
      if (fd < 0) return errno;
      const bool ok = ::write(fd, "from the app\n", 13) == 13;
      ::close(fd);
      if (!ok) return EIO;
    }
    return 0;
  });
  EXPECT_EQ(rc, 0) << std::strerror(rc);
  EXPECT_EQ(slurp(backing("shared/docs/new")), "from the app\n");
}

TEST_F(Gluster, ReadOnlyShareRefusesEveryChange) {
  ASSERT_NO_FATAL_FAILURE(a_.start());
  ASSERT_NO_FATAL_FAILURE(install(a_, "writer", {{"media", "read-write"}}));
  ASSERT_NO_FATAL_FAILURE(install(a_, "reader", {{"media", "read"}}));
  write_file(a_.share("writer", "media") + "/photo.jpg", "pixels");
  const std::string ro = a_.share("reader", "media");
  ASSERT_TRUE(wait_until([&] { return fs::exists(ro + "/photo.jpg"); }, kCrossNode));
  EXPECT_EQ(read_file(ro + "/photo.jpg"), "pixels");
  EXPECT_EQ(open_err(ro + "/photo.jpg", O_WRONLY), Err{EROFS});
  EXPECT_EQ(open_err(ro + "/new", O_WRONLY | O_CREAT), Err{EROFS});
  EXPECT_EQ(sys(::mkdir((ro + "/d").c_str(), 0755)), Err{EROFS});
  EXPECT_EQ(sys(::unlink((ro + "/photo.jpg").c_str())), Err{EROFS});
  EXPECT_EQ(sys(::rename((ro + "/photo.jpg").c_str(), (ro + "/x.jpg").c_str())), Err{EROFS});
  EXPECT_EQ(sys(::truncate((ro + "/photo.jpg").c_str(), 0)), Err{EROFS});
  EXPECT_EQ(sys(::chmod((ro + "/photo.jpg").c_str(), 0777)), Err{EROFS});
  // Nothing changed on the volume.
  EXPECT_EQ(read_file(backing("shared/media/photo.jpg")), "pixels");
  EXPECT_EQ(list_dir(backing("shared/media")), (std::vector<std::string>{".", "..", "photo.jpg"}));
}

TEST_F(Gluster, NoEscapeOutOfAView) {
  ASSERT_NO_FATAL_FAILURE(a_.start());
  ASSERT_NO_FATAL_FAILURE(install(a_, "one", {{"docs", "read-write"}}));
  ASSERT_NO_FATAL_FAILURE(install(a_, "two", {}));
  const std::string one = a_.data("one"), two = a_.data("two"), docs = a_.share("one", "docs");
  write_file(one + "/f", "one's\n");
  // Renames and links out of a view, into another app's view or a share: EXDEV.
  EXPECT_EQ(sys(::rename((one + "/f").c_str(), (two + "/f").c_str())), Err{EXDEV});
  EXPECT_EQ(sys(::rename((one + "/f").c_str(), (docs + "/f").c_str())), Err{EXDEV});
  EXPECT_EQ(sys(::link((one + "/f").c_str(), (two + "/f").c_str())), Err{EXDEV});
  EXPECT_FALSE(fs::exists(backing("apps/two/data/f")));
  // ".." at a view root is the directory above the views, never the storage root's.
  const auto above = list_dir(one + "/..");
  EXPECT_EQ(std::count(above.begin(), above.end(), ".portalfs-store"), 0);
  EXPECT_EQ(open_err(one + "/../../../../.portalfs-store", O_RDONLY), Err{ENOENT});
  // A symlink planted on the volume under a name the kernel just found missing (so the open
  // below reaches the daemon as CREATE without another lookup): the daemon never creates
  // through it, whatever the kernel asks.
  const fs::path outside = tmp_ / "outside";
  fs::create_directories(outside);
  struct stat st {};
  ASSERT_EQ(sys(::lstat((one + "/out").c_str(), &st)), Err{ENOENT});
  ASSERT_EQ(sys(::symlink((outside / "planted").c_str(), backing("apps/one/data/out").c_str())), kOk);
  { auto fd = open_fd(one + "/out", O_WRONLY | O_CREAT); }
  EXPECT_FALSE(fs::exists(outside / "planted")) << "created through a planted symlink";
  ASSERT_TRUE(wait_until([&] { return ::lstat((one + "/out").c_str(), &st) == 0; }, kCrossNode));
  EXPECT_TRUE(S_ISLNK(st.st_mode));
  // RENAME_NOREPLACE/EXCHANGE: the volume has no rename flags; the view answers as it does.
  EXPECT_NE(sys(::syscall(SYS_renameat2, AT_FDCWD, (one + "/f").c_str(), AT_FDCWD, (two + "/f").c_str(),
                          RENAME_NOREPLACE)),
            kOk);
  EXPECT_FALSE(fs::exists(backing("apps/two/data/f")));
}

TEST_F(Gluster, EscapesStayRefusedAfterARestart) {
  ASSERT_NO_FATAL_FAILURE(a_.start());
  ASSERT_NO_FATAL_FAILURE(install(a_, "one", {}));
  ASSERT_NO_FATAL_FAILURE(install(a_, "two", {}));
  write_file(a_.data("one") + "/f", "x");
  a_.stop();
  ASSERT_NO_FATAL_FAILURE(a_.start());
  EXPECT_EQ(read_file(a_.data("one") + "/f"), "x");
  EXPECT_EQ(sys(::rename((a_.data("one") + "/f").c_str(), (a_.data("two") + "/f").c_str())), Err{EXDEV});
  EXPECT_FALSE(fs::exists(backing("apps/two/data/f")));
}

TEST_F(Gluster, ShareTrashWorksWithoutRenameFlags) {
  ASSERT_NO_FATAL_FAILURE(a_.start());
  ASSERT_EQ(a_.ctl({"share", "create", "docs", "--trash", "1d"}).code, 0);
  ASSERT_NO_FATAL_FAILURE(install(a_, "notes", {{"docs", "read-write"}}));
  write_file(a_.share("notes", "docs") + "/a.txt", "keep me\n");
  ASSERT_EQ(sys(::unlink((a_.share("notes", "docs") + "/a.txt").c_str())), kOk);
  EXPECT_FALSE(fs::exists(backing("shared/docs/a.txt")));
  const auto list = a_.ctl({"trash", "list", "docs", "--format", "json"});
  ASSERT_EQ(list.code, 0) << list.err;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(list.out, m, std::regex(R"re("id"\s*:\s*"([^"]+)")re"))) << list.out;
  const auto restore = a_.ctl({"trash", "restore", m[1].str()});
  ASSERT_EQ(restore.code, 0) << restore.err;
  EXPECT_EQ(read_file(backing("shared/docs/a.txt")), "keep me\n");
}

// The kernel's fuse_request_send tracepoint in a tracefs instance of this test's own (tracefs
// mounted if it is not, unmounted and the instance removed at the end): the requests each
// FUSE connection sends, by opcode.
class FuseTrace {
 public:
  struct Counts {
    std::map<std::string, long> by_op;
    [[nodiscard]] long of(const std::string& op) const {
      auto it = by_op.find(op);
      return it == by_op.end() ? 0 : it->second;
    }
    [[nodiscard]] std::string line() const {
      std::string out;
      for (const auto& [op, n] : by_op) out += (out.empty() ? "" : ", ") + std::to_string(n) + " " + op;
      return out.empty() ? "nothing" : out;
    }
  };
  FuseTrace() = default;
  FuseTrace(const FuseTrace&) = delete;
  FuseTrace& operator=(const FuseTrace&) = delete;
  ~FuseTrace() {
    if (!instance_.empty()) ::rmdir(instance_.c_str());
    if (!mounted_.empty()) ::umount2(mounted_.c_str(), MNT_DETACH);
  }
  void open() {
    const fs::path tracing = "/sys/kernel/tracing";
    if (!fs::exists(tracing / "instances")) {
      ASSERT_EQ(::mount("tracefs", tracing.c_str(), "tracefs", 0, nullptr), 0) << "tracefs: " << std::strerror(errno);
      mounted_ = tracing;
    }
    const fs::path trace = tracing / "instances" / ("portalfs-gluster-" + std::to_string(::getpid()));
    ASSERT_EQ(sys(::mkdir(trace.c_str(), 0700)), kOk);
    instance_ = trace;
    ASSERT_TRUE(fs::exists(trace / "events/fuse/fuse_request_send")) << "no fuse tracepoints in this kernel";
    write_file(trace / "events/fuse/fuse_request_send/enable", "1");
  }
  /// What the trace lines of the connection of the FUSE mount `path` start with.
  static std::string connection_of(const std::string& path) {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) return "connection ?";
    return "connection " + std::to_string(minor(st.st_dev)) + " req ";
  }
  void on() {
    write_file(instance_ / "trace", "");
    write_file(instance_ / "tracing_on", "1");
  }
  /// Stops, and counts the requests of `connection` (connection_of) since on().
  Counts off(const std::string& connection) {
    write_file(instance_ / "tracing_on", "0");
    return count(connection);
  }
  /// Counts the requests of `connection` since on(), tracing on.
  Counts count(const std::string& connection) {
    Counts out;
    std::istringstream lines(read_file(instance_ / "trace"));
    for (std::string line; std::getline(lines, line);) {
      if (line.find(connection) == std::string::npos) continue;
      const auto at = line.find("(FUSE_");
      if (at == std::string::npos) continue;
      const auto end = line.find(')', at);
      out.by_op[line.substr(at + 6, end - at - 6)]++;
    }
    return out;
  }

 private:
  fs::path instance_;
  std::string mounted_;
};

// A create in a shared view asks the client mount for the new file's attributes once (the
// GETATTR after the write, as a create on the client mount itself): the daemon takes the new
// entry's attributes before it records who made the file. The record, an xattr, drops the
// ctime the client's kernel had cached, so a statx after it was one GETATTR round trip more per
// create. Counted with the kernel's fuse_request_send tracepoint (a tracefs instance of this
// test's own) on client mount A's connection.
TEST_F(Gluster, SharedViewCreateAsksTheClientForAttributesOnce) {
  FuseTrace trace;
  ASSERT_NO_FATAL_FAILURE(trace.open());
  const std::string on_a = FuseTrace::connection_of(env("PORTALFS_GLUSTER_A"));

  ASSERT_NO_FATAL_FAILURE(a_.start());
  ASSERT_NO_FATAL_FAILURE(install(a_, "notes", {{"docs", "read-write"}}));
  const std::string v = a_.share("notes", "docs");
  write_file(v + "/warm", "x");  // the share's directory looked up and cached
  constexpr long kFiles = 20;
  trace.on();
  for (long i = 0; i < kFiles; ++i) write_file(v + "/f" + std::to_string(i), "x");
  const auto counts = trace.off(on_a);
  ASSERT_EQ(counts.of("CREATE"), kFiles) << "the trace does not see client A's requests";
  EXPECT_LE(counts.of("GETATTR"), kFiles + kFiles / 4) << "GETATTRs on the client for " << kFiles << " creates";
  EXPECT_EQ(read_file(backing("shared/docs/f7")), "x");
}

// A listing through a view asks the client mount what a listing on the client mount itself
// does (Options::dir_streams, fuse/ops_dir.cpp): for a directory of 20 entries one OPENDIR,
// one RELEASEDIR and two READDIRPLUS (the second finds the end). Each of the view's two
// READDIRs opened the directory afresh before: 2 OPENDIR, 3 READDIRPLUS, 2 RELEASEDIR. And an
// `ls -l` once the entries' 1 s timeouts passed looks none of them up through the view: the
// listing is read again (READDIRPLUS, fresh attributes), where the kernel's cached listing
// handed out none and each lstat was a LOOKUP, through the view and on the client.
TEST_F(Gluster, AListingAsksTheClientWhatAListingOnTheClientMountDoes) {
  FuseTrace trace;
  ASSERT_NO_FATAL_FAILURE(trace.open());
  const std::string on_a = FuseTrace::connection_of(env("PORTALFS_GLUSTER_A"));
  ASSERT_NO_FATAL_FAILURE(a_.start());
  ASSERT_NO_FATAL_FAILURE(install(a_, "notes", {{"docs", "read-write"}}));
  const std::string v = a_.share("notes", "docs") + "/dir";
  const std::string on_view = FuseTrace::connection_of(a_.mnt());
  ASSERT_EQ(sys(::mkdir(v.c_str(), 0755)), kOk);
  constexpr long kFiles = 20;
  for (long i = 0; i < kFiles; ++i) write_file(v + "/f" + std::to_string(i), "x");
  // One listing: opendir, readdir to the end, closedir; lstat of each entry with `with_stat`.
  auto list = [](const std::string& dir, bool with_stat) {
    long n = 0;
    DIR* d = ::opendir(dir.c_str());
    if (!d) return -1L;
    while (const dirent* e = ::readdir(d)) {
      struct stat st {};
      if (with_stat && ::fstatat(::dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) n = -1000;
      n++;
    }
    ::closedir(d);
    return n;
  };
  struct stat st {};
  ASSERT_EQ(sys(::stat(v.c_str(), &st)), kOk);  // the directory looked up
  // A directory's RELEASEDIR is sent after its close() returned: waited for.
  auto released = [&](const std::string& connection) {
    return wait_until([&] { return trace.count(connection).of("RELEASEDIR") >= 1; }, 5s);
  };
  trace.on();
  ASSERT_EQ(list(v, false), kFiles + 2);
  EXPECT_TRUE(released(on_a)) << "no RELEASEDIR on the client";
  const auto through_view = trace.off(on_a);
  ASSERT_EQ(sys(::stat(backing("shared/docs/dir").c_str(), &st)), kOk);
  trace.on();
  ASSERT_EQ(list(backing("shared/docs/dir"), false), kFiles + 2);
  EXPECT_TRUE(released(on_a));
  const auto on_client = trace.off(on_a);
  std::cerr << "a listing of " << kFiles << " files through the view asks the client: " << through_view.line()
            << "; on the client mount itself: " << on_client.line() << "\n";
  EXPECT_EQ(through_view.of("OPENDIR"), on_client.of("OPENDIR"));
  EXPECT_EQ(through_view.of("RELEASEDIR"), on_client.of("RELEASEDIR"));
  EXPECT_LE(through_view.of("READDIRPLUS") + through_view.of("READDIR"),
            on_client.of("READDIRPLUS") + on_client.of("READDIR"));

  // ls -l after every timeout: the directory opened first (its path walk's lookups apart).
  std::this_thread::sleep_for(1200ms);
  ASSERT_EQ(sys(::stat(v.c_str(), &st)), kOk);
  trace.on();
  ASSERT_EQ(list(v, true), kFiles + 2);
  const auto ls_l = trace.off(on_view);
  std::cerr << "ls -l of " << kFiles << " files after 1.2 s, through the view: " << ls_l.line() << "\n";
  EXPECT_GE(ls_l.of("READDIRPLUS"), 1) << "the listing was not read again";
  EXPECT_LE(ls_l.of("LOOKUP"), 1) << "lookups through the view for " << kFiles << " entries listed";
}

// ---- two nodes: what one writes the other sees ----

TEST_F(Gluster, WriteOnOneNodeIsSeenOnTheOtherAfterClose) {
  ASSERT_NO_FATAL_FAILURE(a_.start());
  ASSERT_NO_FATAL_FAILURE(b_.start());
  ASSERT_NO_FATAL_FAILURE(install(a_, "alpha", {{"docs", "read-write"}}));
  ASSERT_NO_FATAL_FAILURE(install(b_, "beta", {{"docs", "read-write"}}));
  const std::string on_a = a_.share("alpha", "docs"), on_b = b_.share("beta", "docs");
  write_file(on_a + "/report.txt", "version 1\n");
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_TRUE(wait_until([&] { return slurp(on_b + "/report.txt") == "version 1\n"; }, kCrossNode))
      << "B sees: " << slurp(on_b + "/report.txt");
  // A rewrite of a file B has read (and cached) shows too.
  write_file(on_a + "/report.txt", "version 2, longer\n");
  ASSERT_TRUE(wait_until([&] { return slurp(on_b + "/report.txt") == "version 2, longer\n"; }, kCrossNode))
      << "B sees: " << slurp(on_b + "/report.txt");
  // Same length, new bytes: only mtime tells.
  write_file(on_b + "/report.txt", "VERSION 2, LONGER\n");
  ASSERT_TRUE(wait_until([&] { return slurp(on_a + "/report.txt") == "VERSION 2, LONGER\n"; }, kCrossNode))
      << "A sees: " << slurp(on_a + "/report.txt");
  ASSERT_EQ(sys(::unlink((on_b + "/report.txt").c_str())), kOk);
  ASSERT_TRUE(wait_until([&] { return !fs::exists(on_a + "/report.txt"); }, kCrossNode));
  std::cerr << "cross-node round trips took "
            << std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count()
            << " ms\n";
}

TEST_F(Gluster, DataViewWriteIsSeenOnTheOtherNode) {
  ASSERT_NO_FATAL_FAILURE(a_.start());
  ASSERT_NO_FATAL_FAILURE(b_.start());
  ASSERT_NO_FATAL_FAILURE(install(a_, "notes", {}));
  ASSERT_NO_FATAL_FAILURE(install(b_, "notes", {}));  // the same app, moved to node B
  write_file(a_.data("notes") + "/db", "row 1\n");
  ASSERT_TRUE(wait_until([&] { return slurp(b_.data("notes") + "/db") == "row 1\n"; }, kCrossNode));
  write_file(b_.data("notes") + "/db", "row 1\nrow 2\n");
  ASSERT_TRUE(wait_until([&] { return slurp(a_.data("notes") + "/db") == "row 1\nrow 2\n"; }, kCrossNode))
      << "A sees: " << slurp(a_.data("notes") + "/db");
}

// ---- shared state (mountmgr/shared_state.hpp) ----

// How long a change of state made on one node may take to be served on the other: the
// watcher's 1 s poll, the client's metadata cache, and a view change.
constexpr auto kStatePropagation = 5s;

class GlusterShared : public Gluster {
 protected:
  void SetUp() override {
    Gluster::SetUp();
    a_.shared_state = b_.shared_state = true;
  }
  static bool has_app(const Node& n, const std::string& app) { return fs::exists(n.data(app)); }
};

TEST_F(GlusterShared, InstallOnOneNodeIsServedOnTheOther) {
  ASSERT_NO_FATAL_FAILURE(a_.start());
  ASSERT_NO_FATAL_FAILURE(b_.start());
  ASSERT_NO_FATAL_FAILURE(install(a_, "notes", {{"docs", "read"}}));
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_TRUE(wait_until([&] { return has_app(b_, "notes"); }, kStatePropagation))
      << "B: " << b_.ctl({"app", "list"}).out;
  std::cerr << "install reached B in "
            << std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count()
            << " ms\n";
  // B's copy enforces the same grant.
  EXPECT_EQ(open_err(b_.share("notes", "docs") + "/x", O_WRONLY | O_CREAT), Err{EROFS});
  // Removed on B: gone on A too.
  ASSERT_EQ(b_.ctl({"app", "remove", "notes"}).code, 0);
  EXPECT_TRUE(wait_until([&] { return !has_app(a_, "notes"); }, kStatePropagation));
}

TEST_F(GlusterShared, GrantAndRevokeOnOneNodeReachTheOthersViews) {
  ASSERT_NO_FATAL_FAILURE(a_.start());
  ASSERT_NO_FATAL_FAILURE(b_.start());
  ASSERT_NO_FATAL_FAILURE(install(a_, "notes", {}));
  ASSERT_TRUE(wait_until([&] { return has_app(b_, "notes"); }, kStatePropagation));
  auto r = a_.ctl({"grant", "notes", "own_media", "read-write", "--path", "/media"});
  ASSERT_EQ(r.code, 0) << r.err;
  const std::string on_b = b_.share("notes", "own_media");
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_TRUE(wait_until([&] { return fs::exists(on_b); }, kStatePropagation));
  std::cerr << "grant reached B's views in "
            << std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count()
            << " ms\n";
  write_file(on_b + "/from-b", "1");
  EXPECT_EQ(read_file(backing("shared/own_media/from-b")), "1");
  // Down to read on A: B's view refuses writes within the same time.
  r = a_.ctl({"grant", "notes", "own_media", "read", "--path", "/media"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(wait_until([&] { return open_err(on_b + "/from-b", O_WRONLY) == Err{EROFS}; }, kStatePropagation));
  // Revoked on B: A's view is gone.
  r = b_.ctl({"revoke", "notes", "own_media"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(wait_until([&] { return !fs::exists(a_.share("notes", "own_media")); }, kStatePropagation));
}

TEST_F(GlusterShared, ConcurrentInstallsOnBothNodesAreAllKept) {
  ASSERT_NO_FATAL_FAILURE(a_.start());
  ASSERT_NO_FATAL_FAILURE(b_.start());
  constexpr int kPerNode = 6;
  for (int i = 0; i < kPerNode; ++i) {
    for (const char* n : {"a", "b"}) {
      write_file(tmp_ / ("app" + std::string(n) + std::to_string(i) + ".json"),
                 R"({"name": "app)" + std::string(n) + std::to_string(i) + R"(", "v": "1", "data_dirs": ["/data"]})");
    }
  }
  // Both nodes install at once, each from its own thread: every request takes the shared lock.
  auto installer = [&](const Node& node, const char* n, std::vector<int>* codes) {
    for (int i = 0; i < kPerNode; ++i) {
      const auto r = node.ctl({"app", "install", tmp_ / ("app" + std::string(n) + std::to_string(i) + ".json")});
      codes->push_back(r.code);
      if (r.code != 0) std::cerr << node.name << ": " << r.err;
    }
  };
  std::vector<int> codes_a, codes_b;
  {
    std::jthread ta(installer, std::cref(a_), "a", &codes_a);
    std::jthread tb(installer, std::cref(b_), "b", &codes_b);
  }
  EXPECT_EQ(codes_a, std::vector<int>(kPerNode, 0));
  EXPECT_EQ(codes_b, std::vector<int>(kPerNode, 0));
  for (const Node* node : {&a_, &b_}) {
    for (int i = 0; i < kPerNode; ++i) {
      for (const char* n : {"a", "b"}) {
        const std::string app = "app" + std::string(n) + std::to_string(i);
        EXPECT_TRUE(wait_until([&] { return has_app(*node, app); }, kStatePropagation)) << node->name << " lacks " << app;
      }
    }
  }
  // Generation 1 (A's start) and one per install, each published once: none overwritten.
  const fs::path cluster = a_.storage / ".portalfs-cluster";
  const std::string last = "state." + std::to_string(1 + 2 * kPerNode) + ".json";
  EXPECT_TRUE(fs::exists(cluster / last)) << "no " << last;
  EXPECT_FALSE(fs::exists(cluster / ("state." + std::to_string(2 + 2 * kPerNode) + ".json")));
}

TEST_F(GlusterShared, NodeThatWasDownCatchesUp) {
  ASSERT_NO_FATAL_FAILURE(a_.start());
  ASSERT_NO_FATAL_FAILURE(b_.start());
  ASSERT_EQ(b_.daemon->stop(SIGKILL, 10s), 128 + SIGKILL);
  b_.daemon.reset();
  ::umount2(b_.mnt().c_str(), MNT_DETACH);
  ASSERT_NO_FATAL_FAILURE(install(a_, "late", {}));  // while B is down: A serves alone
  write_file(a_.data("late") + "/f", "made while B was down");
  ASSERT_NO_FATAL_FAILURE(b_.start());
  EXPECT_EQ(slurp(b_.data("late") + "/f"), "made while B was down");
}

// ---- faults ----

TEST_F(Gluster, NodeKilledTheOtherKeepsServing) {
  ASSERT_NO_FATAL_FAILURE(a_.start());
  ASSERT_NO_FATAL_FAILURE(b_.start());
  ASSERT_NO_FATAL_FAILURE(install(a_, "alpha", {{"docs", "read-write"}}));
  ASSERT_NO_FATAL_FAILURE(install(b_, "beta", {{"docs", "read-write"}}));
  write_file(a_.share("alpha", "docs") + "/before", "1");
  ASSERT_EQ(a_.daemon->stop(SIGKILL, 10s), 128 + SIGKILL);
  a_.daemon.reset();
  ::umount2(a_.mnt().c_str(), MNT_DETACH);
  const std::string on_b = b_.share("beta", "docs");
  ASSERT_TRUE(wait_until([&] { return slurp(on_b + "/before") == "1"; }, kCrossNode));
  write_file(on_b + "/after", "2");
  EXPECT_EQ(read_file(backing("shared/docs/after")), "2");
  // A comes back over the same volume and serves what B wrote meanwhile.
  ASSERT_NO_FATAL_FAILURE(a_.start());
  ASSERT_TRUE(wait_until([&] { return slurp(a_.share("alpha", "docs") + "/after") == "2"; }, kCrossNode));
}

// The pids of the volume's bricks (gluster volume status), in brick order.
std::vector<pid_t> brick_pids(const std::string& volume) {
  const auto r = run_command({"/usr/sbin/gluster", "volume", "status", volume, "--xml"}, 60s);
  std::vector<pid_t> pids;
  const std::regex pid(R"(<pid>(\d+)</pid>)");
  const std::regex node(R"(<node>[\s\S]*?</node>)");
  for (auto it = std::sregex_iterator(r.out.begin(), r.out.end(), node); it != std::sregex_iterator(); ++it) {
    const std::string n = it->str();
    if (n.find("<path>localhost</path>") != std::string::npos) continue;  // self-heal daemon
    std::smatch m;
    if (std::regex_search(n, m, pid) && std::stoi(m[1]) > 0) pids.push_back(std::stoi(m[1]));
  }
  return pids;
}

TEST_F(Gluster, BrickDownViewsKeepServing) {
  const std::string volume = env("PORTALFS_GLUSTER_VOLUME");
  ASSERT_FALSE(volume.empty()) << "needs PORTALFS_GLUSTER_VOLUME (run scripts/test-gluster)";
  ASSERT_NO_FATAL_FAILURE(a_.start());
  ASSERT_NO_FATAL_FAILURE(b_.start());
  ASSERT_NO_FATAL_FAILURE(install(a_, "alpha", {{"docs", "read-write"}}));
  ASSERT_NO_FATAL_FAILURE(install(b_, "beta", {{"docs", "read-write"}}));
  write_file(a_.share("alpha", "docs") + "/before", "1");
  const auto pids = brick_pids(volume);
  ASSERT_GE(pids.size(), 2u) << "a replicated volume with running bricks";
  // This test started neither glusterfsd: it kills one brick by the pid gluster reports, and
  // `volume start force` (below) restarts it.
  ASSERT_EQ(::kill(pids.front(), SIGKILL), 0);
  write_file(a_.share("alpha", "docs") + "/during", "2");
  EXPECT_TRUE(wait_until([&] { return slurp(b_.share("beta", "docs") + "/during") == "2"; }, 3 * kCrossNode));
  EXPECT_EQ(read_file(b_.share("beta", "docs") + "/before"), "1");
  const auto restart = run_command({"/usr/sbin/gluster", "--mode=script", "volume", "start", volume, "force"}, 60s);
  EXPECT_EQ(restart.code, 0) << restart.out << restart.err;
  EXPECT_EQ(read_file(a_.share("alpha", "docs") + "/during"), "2");
}

}  // namespace
}  // namespace portalfs::testutil
