// SPDX-License-Identifier: MIT
// End to end with a real container runtime: portalfsd + portalctl + runc (Debian's) with a
// busybox rootfs. An app's container writes its data dir and a read-write share, is refused on
// a read-only share, loses a revoked share live, works in a user namespace through a range
// map, gets working mounts back within 2 s after the daemon is killed and restarted, and gets a
// grant, a grant's new path and a revoke while it runs, once attached; `df` in it shows its app's
// quota (the one portalfsd accounts itself where the storage has no project quotas).
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <regex>
#include <string>
#include <thread>
#include <vector>
#include <nlohmann/json.hpp>

#include "tests/testutil/daemon_fixture.hpp"

namespace portalfs::testutil {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using nlohmann::json;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

constexpr const char* kRunc = "/usr/sbin/runc";
constexpr const char* kBusybox = "/bin/busybox";

struct UserNs {
  uint32_t host_base;  // container 0 is host host_base
  uint32_t count;
};

class Container : public DaemonFixture {
 protected:
  void SetUp() override {
    if (::access(kRunc, X_OK) != 0 || ::access(kBusybox, X_OK) != 0) {
      PORTALFS_SKIP_OR_FAIL("runc or busybox-static missing (apt-get install runc busybox-static)");
    }
    DaemonFixture::SetUp();
    if (IsSkipped()) return;
    ASSERT_NO_FATAL_FAILURE(start());
    ctr_root_ = dir_ / "runc";  // runc's own state, private to this test
  }
  void TearDown() override {
    for (const auto& id : containers_) runc({"delete", "-f", id});
    DaemonFixture::TearDown();
  }

  CommandResult runc(std::vector<std::string> args) {
    args.insert(args.begin(), {kRunc, "--root", ctr_root_});
    return run_command(args, 30s);
  }

  /// Makes a bundle (busybox rootfs, the given portalfs mounts) and starts `args` (`sleep`)
  /// in it, detached, as uid/gid `uid` (default 1000). Its output goes to runc-<id>.log.
  void start_container(const std::string& id, const json& mounts, std::optional<UserNs> userns = {},
                       uint32_t uid = 1000,
                       std::vector<std::string> args = {"/bin/sleep", "600"}) {
    std::string bundle = dir_ / ("bundle-" + id);
    fs::create_directories(bundle + "/rootfs/bin");
    for (const char* d : {"data", "media", "documents", "music", "tunes", "tmp", "proc", "dev", "sys"}) {
      fs::create_directories(bundle + "/rootfs/" + d);
    }
    fs::copy_file(kBusybox, bundle + "/rootfs/bin/busybox");
    fs::copy_file(PORTALFS_INOTIFY_WATCH, bundle + "/rootfs/bin/inotify_watch");
    for (const char* tool : {"sh", "cat", "echo", "ls", "sleep", "touch", "test", "stat", "id", "mkdir", "df", "dd"}) {
      fs::create_symlink("busybox", bundle + "/rootfs/bin/" + tool);
    }
    auto spec = run_command({kRunc, "spec", "--bundle", bundle});
    ASSERT_EQ(spec.code, 0) << spec.err;
    json cfg = json::parse(read_file(bundle + "/config.json"));
    cfg["linux"].erase("resources");  // no cgroup controllers are delegated on these hosts
    cfg["linux"].erase("cgroupsPath");
    json kept = json::array();
    for (const auto& m : cfg["mounts"]) {
      if (m["destination"] != "/sys/fs/cgroup") kept.push_back(m);
    }
    for (const auto& m : mounts) kept.push_back(m);
    cfg["mounts"] = kept;
    cfg["process"]["terminal"] = false;
    cfg["process"]["user"] = {{"uid", uid}, {"gid", uid}};
    cfg["process"]["args"] = args;
    cfg["root"]["readonly"] = true;
    if (userns) {
      cfg["linux"]["namespaces"].push_back({{"type", "user"}});
      json map = json::array({{{"containerID", 0}, {"hostID", userns->host_base}, {"size", userns->count}}});
      cfg["linux"]["uidMappings"] = map;
      cfg["linux"]["gidMappings"] = map;
      // sysfs can't be mounted from a user namespace without a network namespace of its own.
      json no_sys = json::array();
      for (const auto& m : cfg["mounts"]) {
        if (m["destination"] != "/sys") no_sys.push_back(m);
      }
      cfg["mounts"] = no_sys;
    }
    write_file(bundle + "/config.json", cfg.dump(2));
    ::chmod(bundle.c_str(), 0755);
    // Detached with pass-through stdio: the container keeps whatever runc's stdout is, so
    // give it a file rather than our pipe (reading a pipe to EOF would wait for the container).
    std::string log = dir_ / ("runc-" + id + ".log");
    Child run({kRunc, "--root", ctr_root_, "run", "--detach", "--bundle", bundle, id}, log);
    int code = run.wait(30s);
    containers_.push_back(id);
    ASSERT_EQ(code, 0) << read_file(log);
  }

  /// Runs a shell command in the container as its user.
  CommandResult exec(const std::string& id, const std::string& cmd) {
    return runc({"exec", id, "/bin/sh", "-c", cmd});
  }

  int container_pid(const std::string& id) {
    auto r = runc({"state", id});
    return json::parse(r.out).value("pid", -1);
  }

  json oci_mounts(const std::string& app) {
    auto r = ctl({"mounts", app, "--format", "oci"});
    EXPECT_EQ(r.code, 0) << r.err;
    return json::parse(r.out);
  }

  static struct stat host_stat(const std::string& path) {
    struct stat st {};
    EXPECT_EQ(::stat(path.c_str(), &st), 0) << path;
    return st;
  }

  std::string ctr_root_;
  std::vector<std::string> containers_;
};

constexpr const char* kApp = R"({"name": "box", "v": "1.0",
  "data_dirs": [{"path": "/data", "uid": 1000, "gid": 1000}],
  "shared_dirs": [
    {"name": "own_media", "path": "/media", "access": "read", "uid": 1000, "gid": 1000},
    {"name": "own_documents", "path": "/documents", "access": "read-write", "uid": 1000, "gid": 1000}]})";

TEST_F(Container, AppWritesItsGrantsIsRefusedReadOnlyAndLosesARevokedShareLive) {
  write_file(dir_ / "box.json", kApp);
  ASSERT_EQ(ctl({"app", "install", dir_ / "box.json"}).code, 0);
  write_file(storage() + "/shared/own_media/song.txt", "la\n");
  ASSERT_NO_FATAL_FAILURE(start_container("box1", oci_mounts("box")));

  auto r = exec("box1", "id -u && echo hi > /data/a.txt && echo doc > /documents/d.txt");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "1000\n");
  auto a = host_stat(storage() + "/apps/box/data/a.txt");
  EXPECT_EQ(a.st_uid, 1000u);  // created as the caller, no chown
  EXPECT_EQ(a.st_gid, 1000u);
  EXPECT_EQ(read_file(storage() + "/apps/box/data/a.txt"), "hi\n");
  auto d = host_stat(storage() + "/shared/own_documents/d.txt");
  EXPECT_EQ(d.st_uid, 0u);  // squashed to the share's owner on disk...
  EXPECT_EQ(exec("box1", "stat -c %u:%g /documents/d.txt").out, "1000:1000\n");  // ...the app's inside

  r = exec("box1", "cat /media/song.txt && touch /media/new.txt");
  EXPECT_NE(r.code, 0);
  EXPECT_EQ(r.out, "la\n");
  EXPECT_THAT(r.err, HasSubstr("Read-only file system"));
  // access(W_OK) says EROFS too (busybox's `test -w` only looks at mode bits, so ask the
  // kernel directly, through the container's root).
  std::string media = "/proc/" + std::to_string(container_pid("box1")) + "/root/media";
  errno = 0;
  EXPECT_EQ(::access(media.c_str(), W_OK), -1);
  EXPECT_EQ(errno, EROFS);
  EXPECT_FALSE(fs::exists(storage() + "/shared/own_media/new.txt"));

  ASSERT_EQ(ctl({"revoke", "box", "own_documents"}).code, 0);
  r = exec("box1", "cat /documents/d.txt");
  EXPECT_NE(r.code, 0);
  EXPECT_THAT(r.err, HasSubstr("No such file or directory"));
}

// `df -k` / `df -i` in the container, for `path`: {size, used, available} of its one line.
std::vector<uint64_t> df_numbers(const std::string& out) {
  static const std::regex line(R"((\d+)\s+(\d+)\s+(\d+)\s+\d+%\s+\S+\s*$)");
  std::smatch m;
  if (!std::regex_search(out, m, line)) return {};
  return {std::stoull(m[1]), std::stoull(m[2]), std::stoull(m[3])};
}

TEST_F(Container, DfShowsTheAppsQuotaAndWritesStopAtIt) {
  write_file(dir_ / "box.json", kApp);
  ASSERT_EQ(ctl({"app", "install", dir_ / "box.json"}).code, 0);
  auto r = ctl({"quota", "set", "box", "8M", "--inodes", "50"});
  ASSERT_EQ(r.code, 0) << r.err;
  ASSERT_THAT(r.out, HasSubstr("accounted by portalfsd"));  // this storage has no project quotas
  ASSERT_NO_FATAL_FAILURE(start_container("box1", oci_mounts("box")));

  // The limit is the size; the room is what is available (the few bytes of the version marker
  // take a 4 KiB block off it, df counting whole blocks).
  r = exec("box1", "df -k /data");
  ASSERT_EQ(r.code, 0) << r.err;
  auto df = df_numbers(r.out);
  ASSERT_EQ(df.size(), 3u) << r.out;
  EXPECT_EQ(df[0], 8192u) << r.out;
  EXPECT_EQ(df[2], 8188u) << r.out;
  r = exec("box1", "df -i /data");
  ASSERT_EQ(r.code, 0) << r.err;
  df = df_numbers(r.out);
  ASSERT_EQ(df.size(), 3u) << r.out;
  EXPECT_EQ(df[0], 50u) << r.out;
  EXPECT_EQ(df[2], 49u) << r.out;

  r = exec("box1", "dd if=/dev/zero of=/data/two bs=1024 count=2048");
  ASSERT_EQ(r.code, 0) << r.err;
  df = df_numbers(exec("box1", "df -k /data").out);
  ASSERT_EQ(df.size(), 3u);
  EXPECT_EQ(df[2], 8188u - 2048u);
  // Beyond the limit: dd fails with EDQUOT, and what it wrote up to the limit stays.
  r = exec("box1", "dd if=/dev/zero of=/data/big bs=4096 count=4096");
  EXPECT_NE(r.code, 0);
  EXPECT_THAT(r.err, HasSubstr("Disk quota exceeded"));
  EXPECT_EQ(fs::file_size(storage() + "/apps/box/data/two"), 2u * 1024 * 1024);
  const auto marker = fs::file_size(storage() + "/apps/box/data/.portalfs-version");
  EXPECT_EQ(fs::file_size(storage() + "/apps/box/data/big"), 6u * 1024 * 1024 - marker);
  df = df_numbers(exec("box1", "df -k /data").out);
  ASSERT_EQ(df.size(), 3u);
  EXPECT_EQ(df[2], 0u);
}

TEST_F(Container, UserNamespacedContainerOwnsItsFilesThroughARangeMap) {
  write_file(dir_ / "box.json", kApp);
  ASSERT_EQ(ctl({"app", "install", dir_ / "box.json", "--uid-map", "0:100000:65536",
                 "--gid-map", "0:100000:65536"}).code, 0);
  ASSERT_NO_FATAL_FAILURE(start_container("boxns", oci_mounts("box"), UserNs{100000, 65536}));

  auto r = exec("boxns", "stat -c %u:%g /data && echo ns > /data/ns.txt && stat -c %u /data/ns.txt");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "1000:1000\n1000\n");  // the container sees its own ids
  auto st = host_stat(storage() + "/apps/box/data/ns.txt");
  EXPECT_EQ(st.st_uid, 1000u);  // and the disk keeps container-independent ids
  EXPECT_EQ(st.st_gid, 1000u);
  struct stat view {};
  ASSERT_EQ(::stat((mnt() + "/apps/box/data/data/ns.txt").c_str(), &view), 0);
  EXPECT_EQ(view.st_uid, 101000u);  // presented to the host as the container's host uid
}

TEST_F(Container, AttachedMountsComeBackAfterTheDaemonIsKilled) {
  write_file(dir_ / "box.json", kApp);
  ASSERT_EQ(ctl({"app", "install", dir_ / "box.json"}).code, 0);
  write_file(storage() + "/apps/box/data/kept.txt", "kept\n");
  ASSERT_NO_FATAL_FAILURE(start_container("boxlive", json::array()));
  int pid = container_pid("boxlive");
  ASSERT_GT(pid, 0);

  auto r = ctl({"attach", "box", "--pid", std::to_string(pid)});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(exec("boxlive", "cat /data/kept.txt").out, "kept\n");
  EXPECT_NE(exec("boxlive", "touch /media/x").code, 0);  // attached read-only

  EXPECT_EQ(daemon_->stop(SIGKILL), 128 + SIGKILL);
  EXPECT_THAT(exec("boxlive", "cat /data/kept.txt").err, HasSubstr("not connected"));

  auto t0 = std::chrono::steady_clock::now();
  ASSERT_NO_FATAL_FAILURE(start());
  bool back = wait_until([&] { return exec("boxlive", "cat /data/kept.txt").out == "kept\n"; }, 2s);
  auto took = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0);
  EXPECT_TRUE(back) << "the container's mounts did not come back within 2 s of the restart";
  RecordProperty("heal_ms", static_cast<int>(took.count()));
  EXPECT_EQ(exec("boxlive", "echo more > /data/after.txt").code, 0);
  EXPECT_EQ(read_file(storage() + "/apps/box/data/after.txt"), "more\n");
}

// Grants reach a running container (#12): once attached, a share granted to the app appears at
// its path without a restart, moves when granted again at another path, and is unmounted when
// revoked. A path the container can't take (its root is read-only) does not fail the grant: the
// reply says which container it did not reach and why.
TEST_F(Container, GrantsMovesAndRevokesReachARunningAttachedContainer) {
  write_file(dir_ / "box.json", kApp);
  ASSERT_EQ(ctl({"app", "install", dir_ / "box.json"}).code, 0);
  ASSERT_EQ(ctl({"share", "create", "music"}).code, 0);
  write_file(storage() + "/apps/box/data/kept.txt", "kept\n");
  write_file(storage() + "/shared/music/song.txt", "la la\n");
  ASSERT_NO_FATAL_FAILURE(start_container("boxgrant", json::array()));
  const int pid = container_pid("boxgrant");
  ASSERT_GT(pid, 0);
  auto r = ctl({"attach", "box", "--pid", std::to_string(pid)});
  ASSERT_EQ(r.code, 0) << r.err;
  auto mounts = [&] { return exec("boxgrant", "cat /proc/mounts").out; };
  EXPECT_NE(exec("boxgrant", "cat /music/song.txt").code, 0);  // not granted yet
  EXPECT_THAT(mounts(), Not(HasSubstr(" /music ")));

  r = ctl({"grant", "box", "music", "read", "--path", "/music"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "granted share music to app box at /music (read)\n");  // reached every container
  EXPECT_EQ(exec("boxgrant", "cat /music/song.txt").out, "la la\n");
  write_file(storage() + "/shared/music/later.txt", "written on the host\n");
  EXPECT_EQ(exec("boxgrant", "cat /music/later.txt").out, "written on the host\n");
  EXPECT_THAT(mounts(), HasSubstr(" /music "));
  r = exec("boxgrant", "touch /music/new.txt");  // bound read-only, like the grant
  EXPECT_NE(r.code, 0);
  EXPECT_THAT(r.err, HasSubstr("Read-only file system"));

  // Granted again at another path: there now, and gone from the old one.
  r = ctl({"grant", "box", "music", "read", "--path", "/tunes"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "granted share music to app box at /tunes (read)\n");
  EXPECT_EQ(exec("boxgrant", "cat /tunes/song.txt").out, "la la\n");
  EXPECT_THAT(mounts(), HasSubstr(" /tunes "));
  EXPECT_THAT(mounts(), Not(HasSubstr(" /music ")));
  r = exec("boxgrant", "cat /music/song.txt");
  EXPECT_NE(r.code, 0);
  EXPECT_THAT(r.err, HasSubstr("No such file or directory"));
  r = ctl({"app", "show", "box", "--format", "json"});
  ASSERT_EQ(r.code, 0) << r.err;
  const json shown = json::parse(r.out);
  ASSERT_EQ(shown["attachments"].size(), 1u);
  EXPECT_EQ(shown["attachments"][0]["pid"], pid);
  EXPECT_EQ(shown["attachments"][0]["paths"], json::parse(R"(["/data", "/documents", "/media", "/tunes"])"));
  EXPECT_THAT(ctl({"app", "show", "box"}).out,
              HasSubstr("attached: pid " + std::to_string(pid) + " at /data, /documents, /media, /tunes\n"));

  // Revoked: no longer a mount in the container; the app's other mounts stay.
  r = ctl({"revoke", "box", "music"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "revoked share music from app box\n");
  EXPECT_THAT(mounts(), Not(HasSubstr(" /tunes ")));
  r = exec("boxgrant", "cat /tunes/song.txt");
  EXPECT_NE(r.code, 0);
  EXPECT_THAT(r.err, HasSubstr("No such file or directory"));
  EXPECT_EQ(exec("boxgrant", "cat /data/kept.txt").out, "kept\n");

  // A path the container can't make: the grant stands and is served; the reply says why the
  // container does not have it.
  r = ctl({"grant", "box", "music", "read", "--path", "/nowhere"});
  ASSERT_EQ(r.code, 0) << r.err;
  const std::string p = std::to_string(pid);
  EXPECT_EQ(r.out, "granted share music to app box at /nowhere (read)\napp box, pid " + p +
                       ": container not brought up to date: attach /nowhere into pid " + p +
                       ": mkdir /nowhere: Read-only file system\n");
  EXPECT_EQ(read_file(mnt() + "/apps/box/shared/music/song.txt"), "la la\n");
  EXPECT_THAT(ctl({"app", "show", "box"}).out, HasSubstr("attached: pid " + p + " at /data, /documents, /media\n"));
  EXPECT_EQ(exec("boxgrant", "cat /data/kept.txt").out, "kept\n");

  // Removed: every view of the app is unmounted from the running container, and the
  // attachment is forgotten.
  r = ctl({"app", "remove", "box"});
  ASSERT_EQ(r.code, 0) << r.err;
  for (const char* path : {" /data ", " /documents ", " /media "}) EXPECT_THAT(mounts(), Not(HasSubstr(path)));
  r = exec("boxgrant", "cat /data/kept.txt");
  EXPECT_NE(r.code, 0);
  EXPECT_THAT(r.err, HasSubstr("No such file or directory"));
  r = ctl({"--format", "json", "status"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(json::parse(r.out)["attachments"], 0) << r.out;
  EXPECT_EQ(read_file(storage() + "/apps/box/data/kept.txt"), "kept\n");  // the data stays
}

// A compose app of two services sharing one data directory (#11): the database runs as 999,
// like postgres, and writes its own directory with no chown and no `user: "0:0"`; the web
// service runs as 1000, reads the database's files as its own and gets EROFS on its
// read-only share.
TEST_F(Container, ComposeServicesShareTheirDataDirectoryEachAsItself) {
  fs::create_directories(dir_ / "store/shop");
  write_file(dir_ / "store/shop/app_meta.json", R"({"name": "shop", "app_version": "1.0"})");
  write_file(dir_ / "store/shop/docker-compose.yml.template", R"(services:
  web:
    image: example/web
    user: "1000:1000"
    volumes:
      - "{{ fs.app_data }}/data:/data"
      - "{{ fs.shared }}/own_media:/media:ro"
  db:
    image: postgres:16
    environment:
      PUID: 999
      PGID: 999
    volumes:
      - type: bind
        source: "{{ fs.app_data }}/data"
        target: /data
)");
  auto r = ctl({"app", "install", "--compose", dir_ / "store/shop/docker-compose.yml.template"});
  ASSERT_EQ(r.code, 0) << r.err;
  write_file(storage() + "/shared/own_media/song.txt", "la\n");
  auto mounts = [&](const std::string& service) {
    auto m = ctl({"mounts", "shop", "--service", service, "--format", "oci"});
    EXPECT_EQ(m.code, 0) << m.err;
    return json::parse(m.out);
  };
  ASSERT_NO_FATAL_FAILURE(start_container("shopdb", mounts("db"), {}, 999));
  ASSERT_NO_FATAL_FAILURE(start_container("shopweb", mounts("web"), {}, 1000));

  r = exec("shopdb", "id -u && mkdir -m 700 /data/pg && echo 16 > /data/pg/PG_VERSION && stat -c %u:%g:%a /data/pg");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "999\n999:999:700\n");
  auto pg = host_stat(storage() + "/apps/shop/data/pg/PG_VERSION");
  EXPECT_EQ(pg.st_uid, 999u);  // on disk as the database's user, made without any chown
  EXPECT_EQ(pg.st_gid, 999u);

  r = exec("shopweb", "id -u && stat -c %u /data/pg && cat /data/pg/PG_VERSION && echo up > /data/upload.txt");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "1000\n1000\n16\n");  // the web service sees the same files as its own
  EXPECT_EQ(host_stat(storage() + "/apps/shop/data/upload.txt").st_uid, 1000u);

  r = exec("shopweb", "cat /media/song.txt && touch /media/new.txt");
  EXPECT_NE(r.code, 0);
  EXPECT_EQ(r.out, "la\n");
  EXPECT_THAT(r.err, HasSubstr("Read-only file system"));
  EXPECT_FALSE(fs::exists(storage() + "/shared/own_media/new.txt"));
}

// Issue #12: app B's container watches its view of a share with inotify; app A's container
// changes the share through its own view. B hears every kind of change, as on a local disk.
TEST_F(Container, AWatcherInOneAppsContainerHearsWhatAnotherAppChanges) {
  daemon_->stop(SIGTERM);
  extra_daemon_args_ = {"--events", "on"};
  ASSERT_NO_FATAL_FAILURE(start());
  write_file(dir_ / "writer.json", R"({"name": "writer", "v": "1.0", "shared_dirs": [
    {"name": "own_documents", "path": "/documents", "access": "read-write", "uid": 1000, "gid": 1000}]})");
  write_file(dir_ / "reader.json", R"({"name": "reader", "v": "1.0", "shared_dirs": [
    {"name": "own_documents", "path": "/documents", "access": "read", "uid": 1000, "gid": 1000}]})");
  ASSERT_EQ(ctl({"app", "install", dir_ / "writer.json"}).code, 0);
  ASSERT_EQ(ctl({"app", "install", dir_ / "reader.json"}).code, 0);
  ASSERT_NO_FATAL_FAILURE(start_container("writer1", oci_mounts("writer")));
  ASSERT_NO_FATAL_FAILURE(
      start_container("reader1", oci_mounts("reader"), {}, 1000, {"/bin/inotify_watch", "/documents"}));
  const std::string log = dir_ / "runc-reader1.log";
  const auto wait_for = [&](const std::function<bool(const std::string&)>& done) {
    const auto deadline = std::chrono::steady_clock::now() + 30s;  // generous: the suite runs beside it
    while (!done(read_file(log)) && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(50ms);
    }
    return read_file(log);
  };
  ASSERT_THAT(wait_for([](const std::string& s) { return s.find("ready") != std::string::npos; }),
              HasSubstr("ready"));

  auto r = exec("writer1", "echo scan > /documents/a.txt && chmod 600 /documents/a.txt && "
                           "mv /documents/a.txt /documents/b.txt && mkdir /documents/d");
  ASSERT_EQ(r.code, 0) << r.err;
  // A directory made and removed again before its create was raised in B's view raises
  // nothing there (README): B has seen d before it goes.
  wait_for([](const std::string& s) { return s.find("CREATE d ") != std::string::npos; });
  r = exec("writer1", "rmdir /documents/d && rm /documents/b.txt");
  ASSERT_EQ(r.code, 0) << r.err;
  const std::vector<std::string> expected = {"CREATE a.txt", "MODIFY a.txt", "CLOSE_WRITE a.txt",
                                             "ATTRIB a.txt", "MOVED_FROM a.txt", "MOVED_TO b.txt",
                                             "CREATE d",     "ISDIR d",      "DELETE d",
                                             "DELETE b.txt"};
  const std::string out = wait_for([&](const std::string& s) {
    for (const auto& e : expected) {
      if (s.find(e + " ") == std::string::npos) return false;
    }
    return true;
  });
  for (const auto& e : expected) EXPECT_THAT(out, HasSubstr(e + " ")) << out;
  // The two halves of the rename carry one cookie.
  std::smatch from, to;
  ASSERT_TRUE(std::regex_search(out, from, std::regex("MOVED_FROM a.txt ([0-9]+)"))) << out;
  ASSERT_TRUE(std::regex_search(out, to, std::regex("MOVED_TO b.txt ([0-9]+)"))) << out;
  EXPECT_EQ(from[1], to[1]);
  EXPECT_NE(from[1], "0");
}

}  // namespace
}  // namespace portalfs::testutil
