// SPDX-License-Identifier: MIT
// The store identity (mountmgr/store.hpp): mountinfo parsing, the marker, the check that a
// storage root still leads to the file system it was first served from, its record in the
// state, and what the manager does with it: status, offline views, no writes while offline,
// and healing once the store is back.

#include "mountmgr/store.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <mutex>

#include "common/unique_fd.hpp"
#include "mountmgr/json_reader.hpp"
#include "mountmgr/manager.hpp"
#include "mountmgr/state.hpp"
#include "tests/testutil/temp_dir.hpp"

namespace portalfs::mountmgr {
namespace {

namespace fs = std::filesystem;
using testutil::read_file;
using testutil::TempDir;
using testutil::write_file;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr auto kId = "0123456789abcdef0123456789abcdef";

TEST(MountInfo, ParsesALine) {
  auto m = parse_mountinfo_line(
      "36 35 98:0 /mnt1 /mnt/my\\040disk rw,noatime master:1 shared:7 - ext4 /dev/loop3 rw,errors=continue\n");
  ASSERT_TRUE(m);
  EXPECT_EQ(m->id, 36u);
  EXPECT_EQ(m->mount_point, "/mnt/my disk");
  EXPECT_EQ(m->fs_type, "ext4");
  EXPECT_EQ(m->source, "/dev/loop3");
  // No optional fields at all.
  m = parse_mountinfo_line("22 1 0:21 / /proc rw,nosuid - proc proc rw");
  ASSERT_TRUE(m);
  EXPECT_EQ(m->mount_point, "/proc");
  EXPECT_EQ(m->fs_type, "proc");
}

TEST(MountInfo, RefusesWhatIsNotALine) {
  EXPECT_FALSE(parse_mountinfo_line(""));
  EXPECT_FALSE(parse_mountinfo_line("x 35 98:0 / /mnt rw - ext4 /dev/sda rw"));
  EXPECT_FALSE(parse_mountinfo_line("36 35 98:0 / /mnt rw shared:1 ext4 /dev/sda rw"));  // no "-"
  EXPECT_FALSE(parse_mountinfo_line("36 35 98:0 / /mnt rw -"));
}

TEST(MountInfo, FindsAMountById) {
  const std::string text =
      "1 0 8:1 / / rw - ext4 /dev/sda1 rw\n"
      "garbage\n"
      "57 1 7:3 / /srv/disk rw shared:5 - xfs /dev/loop3 rw\n";
  auto m = find_mount(text, 57);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->mount_point, "/srv/disk");
  EXPECT_EQ(m->fs_type, "xfs");
  EXPECT_FALSE(find_mount(text, 2));
}

TEST(StoreMarker, Format) {
  EXPECT_TRUE(valid_store_id(kId));
  EXPECT_FALSE(valid_store_id("0123456789ABCDEF0123456789abcdef"));  // upper case
  EXPECT_FALSE(valid_store_id("0123"));
  EXPECT_EQ(parse_store_marker(std::string(kId) + "\n"), kId);
  EXPECT_FALSE(parse_store_marker(kId));  // incomplete: no newline
  EXPECT_FALSE(parse_store_marker(std::string(kId) + "\nmore\n"));
  const std::string a = new_store_id();
  EXPECT_TRUE(valid_store_id(a));
  EXPECT_NE(a, new_store_id());
}

class StoreCheckTest : public ::testing::Test {
 protected:
  TempDir tmp;
  std::string root = tmp / "root";
  StoreRecord record{root, kId, "ext4", "/dev/loop3"};
  void SetUp() override { fs::create_directories(root); }
  void write_marker() {
    common::UniqueFd dir(::open(root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    ASSERT_TRUE(dir);
    write_store_marker(dir.get(), root, kId);
  }
};

TEST_F(StoreCheckTest, TheRightStoreMatches) {
  write_marker();
  EXPECT_EQ(read_file(root + "/.portalfs-store"), std::string(kId) + "\n");
  const StoreProbe probe = probe_store(root, true);
  EXPECT_EQ(probe.marker, kId);
  EXPECT_NE(probe.mnt_id, 0u);
  ASSERT_TRUE(probe.mount);  // the mount of the temp dir, from /proc/self/mountinfo
  EXPECT_FALSE(probe.mount->fs_type.empty());
  EXPECT_EQ(store_mismatch(record, probe), "");
  EXPECT_FALSE(fs::exists(root + "/.portalfs-store.new"));
}

TEST_F(StoreCheckTest, TheDirectoryUnderAnUnmountedDiskDoesNot) {
  // What an unmounted disk leaves: its (empty) mount point.
  const std::string why = store_mismatch(record, probe_store(root, true));
  EXPECT_THAT(why, HasSubstr(root + "/.portalfs-store is missing"));
  EXPECT_THAT(why, HasSubstr("expected the file system with store id " + std::string(kId)));
  EXPECT_THAT(why, HasSubstr("ext4 from /dev/loop3"));
  EXPECT_THAT(why, HasSubstr("echo " + std::string(kId) + " > " + root + "/.portalfs-store"));
  EXPECT_EQ(why.find('\n'), std::string::npos);
}

TEST_F(StoreCheckTest, AnotherStoreDoesNot) {
  write_file(root + "/.portalfs-store", "ffffffffffffffffffffffffffffffff\n");
  EXPECT_THAT(store_mismatch(record, probe_store(root, false)),
              HasSubstr("holds another id (ffffffffffffffffffffffffffffffff)"));
  write_file(root + "/.portalfs-store", "not an id\n");
  EXPECT_THAT(store_mismatch(record, probe_store(root, false)), HasSubstr("does not hold a store id"));
}

TEST_F(StoreCheckTest, AMarkerIsNeverFollowedNorWaitedFor) {
  // A symlink to a valid marker elsewhere is not a marker; a fifo does not hang the check.
  write_file(tmp / "elsewhere", std::string(kId) + "\n");
  ASSERT_EQ(::symlink((tmp / "elsewhere").c_str(), (root + "/.portalfs-store").c_str()), 0);
  EXPECT_THAT(store_mismatch(record, probe_store(root, false)), Not(""));
  ::unlink((root + "/.portalfs-store").c_str());
  ASSERT_EQ(::mkfifo((root + "/.portalfs-store").c_str(), 0600), 0);
  EXPECT_THAT(store_mismatch(record, probe_store(root, false)), HasSubstr("not a regular file"));
}

TEST_F(StoreCheckTest, AMissingPathIsNamed) {
  record.path = tmp / "gone";
  EXPECT_THAT(store_mismatch(record, probe_store(record.path, false)),
              HasSubstr(tmp / "gone" + ": No such file or directory"));
  EXPECT_FALSE(fs::exists(tmp / "gone"));  // probing never creates
}

TEST(StoreState, RoundTripAndStrictReading) {
  State s = fresh_state();
  s.stores.push_back({"/srv/storage", kId, "ext4", "/dev/sdb1"});
  const auto doc = to_json(s);
  EXPECT_EQ(state_from_json(doc), s);
  auto bad = doc;
  bad["stores"][0]["id"] = "xyz";
  EXPECT_THROW(state_from_json(bad), FieldError);
  bad = doc;
  bad["stores"][0]["path"] = "relative";
  EXPECT_THROW(state_from_json(bad), FieldError);
  bad = doc;
  bad["stores"].push_back(doc["stores"][0]);
  EXPECT_THROW(state_from_json(bad), FieldError);
  // A state from before stores were recorded has none.
  auto old = doc;
  old.erase("stores");
  EXPECT_TRUE(state_from_json(old).stores.empty());
}

TEST(StoreState, BackingMountsRoundTripAndStrictReading) {
  State s = fresh_state();
  s.mounts.push_back({"/srv/storage/shared/music", "/srv/storage/shared/music", "ext4", "/dev/loop3", "1a2b3c4d5e6f7081"});
  s.mounts.push_back({"/srv/storage/shared/video", "/srv/storage/shared/video", "ext4", "/dev/loop4", ""});
  const auto doc = to_json(s);
  EXPECT_EQ(state_from_json(doc), s);
  EXPECT_FALSE(doc["mounts"][1].contains("fsid"));  // none recorded: a state written before fsids reads the same
  auto bad = doc;
  bad["mounts"][0]["mount_point"] = "relative";
  EXPECT_THROW(state_from_json(bad), FieldError);
  bad = doc;
  bad["mounts"].push_back(doc["mounts"][0]);
  EXPECT_THROW(state_from_json(bad), FieldError);
  auto old = doc;
  old.erase("mounts");
  EXPECT_TRUE(state_from_json(old).mounts.empty());
}

// The manager records the store at the first start and serves its views only while the
// storage root leads to it.
class ManagerStoreTest : public ::testing::Test {
 protected:
  TempDir tmp;
  std::string storage = tmp / "storage";
  std::mutex mutex;
  std::condition_variable cv;
  std::vector<policy::ViewSpecs> notices;
  std::unique_ptr<Manager> mgr;

  void start() {
    mgr.reset();
    notices.clear();
    ManagerConfig c;
    c.storage_root = storage;
    c.state_dir = tmp / "state";
    c.mountpoint = tmp / "mnt";
    mgr = std::make_unique<Manager>(c, [this](const policy::ViewSpecs& views, const policy::ViewSpecs&) {
      std::lock_guard lock(mutex);
      notices.push_back(views);
      cv.notify_all();
    });
  }
  nlohmann::json call(const std::string& verb, nlohmann::json args = nlohmann::json::object(), bool json = false) {
    return mgr->handle({{"verb", verb}, {"format", json ? "json" : "text"}, {"args", std::move(args)}});
  }
  void install_notes() {
    auto r = call("app.install", {{"manifest", R"({"name": "notes", "data_dirs": ["/data"]})"}, {"source", "notes.json"}});
    ASSERT_TRUE(r.value("ok", false)) << r.dump();
  }
  /// Waits for a delivered set of views whose every view is offline == `offline`.
  bool wait_views(bool offline) {
    std::unique_lock lock(mutex);
    return cv.wait_for(lock, std::chrono::seconds(10), [&] {
      return !notices.empty() && !notices.back().empty() &&
             std::all_of(notices.back().begin(), notices.back().end(),
                         [&](const policy::ViewSpec& v) { return v.offline == offline; });
    });
  }
};

TEST_F(ManagerStoreTest, RecordsTheStoreAtTheFirstStart) {
  start();
  const std::string marker = read_file(storage + "/.portalfs-store");
  const auto id = parse_store_marker(marker);
  ASSERT_TRUE(id);
  const auto state = nlohmann::json::parse(read_file(tmp / "state/state.json"));
  ASSERT_EQ(state["stores"].size(), 1u);
  EXPECT_EQ(state["stores"][0]["path"], storage);
  EXPECT_EQ(state["stores"][0]["id"], *id);
  // A restart keeps it.
  start();
  EXPECT_EQ(read_file(storage + "/.portalfs-store"), marker);
  auto status = nlohmann::json::parse(call("status", nlohmann::json::object(), true)["output"].get<std::string>());
  EXPECT_EQ(status["store"]["online"], true);
  EXPECT_EQ(status["store"]["id"], *id);
}

TEST_F(ManagerStoreTest, OfflineStoreServesNothingAndWritesNothingThenHeals) {
  start();
  install_notes();
  const std::string marker = read_file(storage + "/.portalfs-store");
  mgr.reset();
  // The disk is "unmounted": the storage root is now an empty directory.
  fs::rename(storage, tmp / "disk");
  fs::create_directories(storage);
  start();
  for (const auto& v : mgr->views()) EXPECT_TRUE(v.offline) << v.dir_name;
  auto status = call("status");
  EXPECT_THAT(status["output"].get<std::string>(), HasSubstr("store: OFFLINE"));
  EXPECT_THAT(status["output"].get<std::string>(), HasSubstr(storage + "/.portalfs-store is missing"));
  auto json = nlohmann::json::parse(call("status", nlohmann::json::object(), true)["output"].get<std::string>());
  EXPECT_EQ(json["store"]["online"], false);
  EXPECT_THAT(json["store"]["problem"].get<std::string>(), HasSubstr(storage));

  // Nothing lands on the directory underneath: not a new app's data dir, not a share.
  auto r = call("app.install", {{"manifest", R"({"name": "other", "data_dirs": ["/data"]})"}, {"source", "o.json"}});
  EXPECT_FALSE(r.value("ok", true));
  EXPECT_THAT(r.value("error", std::string()), HasSubstr("storage root offline, nothing written"));
  r = call("share.create", {{"name", "music"}});
  EXPECT_FALSE(r.value("ok", true));
  EXPECT_TRUE(fs::is_empty(storage));

  // The disk comes back: the watcher sees it and the views are served again.
  mgr->start();
  fs::remove(storage);
  fs::rename(tmp / "disk", storage);
  ASSERT_TRUE(wait_views(false));
  json = nlohmann::json::parse(call("status", nlohmann::json::object(), true)["output"].get<std::string>());
  EXPECT_EQ(json["store"]["online"], true);
  const uint64_t epoch = mgr->views().front().store_epoch;

  // Gone again at runtime (the marker's file system replaced): offline, with a new epoch after.
  fs::rename(storage, tmp / "disk");
  fs::create_directories(storage);
  ASSERT_TRUE(wait_views(true));
  fs::remove(storage);
  fs::rename(tmp / "disk", storage);
  ASSERT_TRUE(wait_views(false));
  EXPECT_GT(mgr->views().front().store_epoch, epoch);
  EXPECT_EQ(read_file(storage + "/.portalfs-store"), marker);
}

}  // namespace
}  // namespace portalfs::mountmgr
