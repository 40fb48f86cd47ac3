// SPDX-License-Identifier: MIT
// quota.set, quota.clear, usage and the 90 %/100 % warnings through Manager::handle, against
// fake QuotaOps that record what the kernel was asked (the real project quotas are exercised
// on a loop ext4 image in tests/integration/quota_test.cpp): project ids given out and kept,
// limits, the state file, outputs, and refusals that change nothing.

#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <map>
#include <thread>

#include "common/audit.hpp"
#include "mountmgr/manager.hpp"
#include "mountmgr/state_store.hpp"
#include "mountmgr/state.hpp"
#include "tests/testutil/temp_dir.hpp"

namespace portalfs::mountmgr {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using testutil::read_file;
using testutil::TempDir;
using ::testing::HasSubstr;
using ::testing::Not;
using namespace std::chrono_literals;

constexpr auto kNotes = R"({"name": "notes", "data_dirs": ["/data", "/cache",
  {"path": "/media", "shared_dir": "own_media", "access": "read-write"}]})";
constexpr uint64_t kG = uint64_t{1} << 30;

std::string fd_path(int fd) { return fs::read_symlink("/proc/self/fd/" + std::to_string(fd)).string(); }

class QuotaTest : public ::testing::Test {
 protected:
  TempDir tmp;
  std::string storage = tmp / "storage";
  std::string state_dir = tmp / "state";
  // The fake kernel.
  std::string probe_says;                               // "" = project quotas in force
  std::vector<std::pair<std::string, uint32_t>> tagged;  // (directory, id) per assign
  std::map<uint32_t, std::pair<uint64_t, uint64_t>> limits;
  std::map<uint32_t, QuotaUsage> used;
  std::unique_ptr<Manager> mgr;

  void SetUp() override {
    fs::create_directories(tmp / "mnt");
    start();
    json r = call("app.install", {{"manifest", kNotes}, {"source", "app.json"}});
    ASSERT_TRUE(r.value("ok", false)) << r.dump();
  }

  void start() {
    mgr.reset();
    ManagerConfig c;
    c.storage_root = storage;
    c.state_dir = state_dir;
    c.mountpoint = tmp / "mnt";
    c.quota_ops.probe = [this](int) { return probe_says; };
    c.quota_ops.assign = [this](int fd, uint32_t id) {
      tagged.emplace_back(fd_path(fd), id);
      return uint64_t{7};
    };
    c.quota_ops.limit = [this](int, uint32_t id, uint64_t bytes, uint64_t inodes) { limits[id] = {bytes, inodes}; };
    c.quota_ops.usage = [this](int, uint32_t id) {
      QuotaUsage u = used[id];
      u.byte_limit = limits[id].first;
      u.inode_limit = limits[id].second;
      return u;
    };
    mgr = std::make_unique<Manager>(c, [](const policy::ViewSpecs&, const policy::ViewSpecs&) {});
  }

  json call(const std::string& verb, json args = json::object(), bool as_json = false) {
    if (args.is_null()) args = json::object();
    return mgr->handle({{"verb", verb}, {"format", as_json ? "json" : "text"}, {"args", std::move(args)}});
  }
  std::string ok(const std::string& verb, json args = json::object(), bool as_json = false) {
    const json r = call(verb, std::move(args), as_json);
    EXPECT_TRUE(r.value("ok", false)) << verb << ": " << r.dump();
    return r.value("output", "");
  }
  // Refused with code 2 and a one-line message; the state file and the fake kernel unchanged.
  void refused(const std::string& verb, json args, const std::string& message_part) {
    const std::string state_before = testutil::state_files(state_dir);
    const auto tagged_before = tagged.size();
    const auto limits_before = limits;
    const json r = call(verb, std::move(args));
    EXPECT_FALSE(r.value("ok", true)) << r.dump();
    EXPECT_EQ(r.value("code", 0), 2) << r.dump();
    EXPECT_THAT(r.value("error", ""), HasSubstr(message_part));
    EXPECT_THAT(r.value("error", ""), Not(HasSubstr("\n")));
    EXPECT_EQ(testutil::state_files(state_dir), state_before);
    EXPECT_EQ(tagged.size(), tagged_before);
    EXPECT_EQ(limits, limits_before);
  }
  std::map<std::string, QuotaRecord> saved() {
    return read_state_dir(state_dir).quotas;  // state.json and its journal
  }
};

TEST_F(QuotaTest, SetGivesEachTargetAProjectIdOnItsDirectoryAndLimits) {
  EXPECT_EQ(ok("quota.set", {{"target", "notes"}, {"bytes", 10 * kG}}),
            "quota on app notes: 10G, none inodes (project id 100000; 7 files and directories given it now)\n");
  const json out = json::parse(ok("quota.set", {{"target", "own_media"}, {"bytes", kG}, {"inodes", 500}}, true));
  EXPECT_EQ(out["project_id"], 100001);
  EXPECT_EQ(out["target"], "shared/own_media");
  ASSERT_EQ(tagged.size(), 2u);
  EXPECT_EQ(tagged[0], std::make_pair(storage + "/apps/notes", uint32_t{100000}));  // all its data dirs
  EXPECT_EQ(tagged[1], std::make_pair(storage + "/shared/own_media", uint32_t{100001}));
  EXPECT_EQ(limits[100000], std::make_pair(10 * kG, uint64_t{0}));
  EXPECT_EQ(limits[100001], std::make_pair(kG, uint64_t{500}));
  const auto q = saved();
  ASSERT_EQ(q.size(), 2u);
  EXPECT_EQ(q.at("apps/notes"), (QuotaRecord{100000, 10 * kG, 0}));
  EXPECT_EQ(q.at("shared/own_media"), (QuotaRecord{100001, kG, 500}));
}

TEST_F(QuotaTest, AShareTrashGetsTheSharesId) {
  ASSERT_TRUE(call("share.create", {{"name", "docs"}, {"trash", "30d"}}).value("ok", false));
  EXPECT_THAT(ok("quota.set", {{"target", "docs"}, {"bytes", kG}}), HasSubstr("14 files and directories"));
  ASSERT_EQ(tagged.size(), 2u);
  EXPECT_EQ(tagged[0], std::make_pair(storage + "/shared/docs", uint32_t{100000}));
  EXPECT_EQ(tagged[1], std::make_pair(storage + "/share-trash/docs", uint32_t{100000}));  // a restore stays in one project
}

TEST_F(QuotaTest, AnIdStaysWithItsTargetAfterClearAndRestart) {
  ok("quota.set", {{"target", "notes"}, {"bytes", kG}});
  EXPECT_EQ(ok("quota.clear", {{"target", "notes"}}), "quota on app notes cleared\n");
  EXPECT_EQ(limits[100000], std::make_pair(uint64_t{0}, uint64_t{0}));
  EXPECT_EQ(saved().at("apps/notes"), (QuotaRecord{100000, 0, 0}));  // the files keep the id
  ok("quota.set", {{"target", "own_media"}, {"bytes", kG}});
  EXPECT_EQ(saved().at("shared/own_media").project_id, 100001u);  // 100000 is still notes'
  start();  // a restart reads the ids back
  ok("quota.set", {{"target", "notes"}, {"bytes", 2 * kG}});
  EXPECT_EQ(saved().at("apps/notes"), (QuotaRecord{100000, 2 * kG, 0}));
  EXPECT_EQ(tagged.back().second, 100000u);
}

// No project quotas: the limit is recorded as the daemon's to account, nothing is tagged or
// limited in the kernel, and the app's data views (not its shared ones) carry it.
TEST_F(QuotaTest, WithoutProjectQuotasTheDaemonAccounts) {
  probe_says = "the storage root's file system (ext4) has no project quotas turned on";
  const std::string out = ok("quota.set", {{"target", "notes"}, {"bytes", kG}, {"inodes", 10}});
  EXPECT_THAT(out, HasSubstr("accounted by portalfsd"));
  QuotaRecord want{100000, kG, 10};
  want.by_daemon = true;
  EXPECT_EQ(saved().at("apps/notes"), want);
  EXPECT_TRUE(tagged.empty());
  EXPECT_TRUE(limits.empty());
  std::size_t limited = 0;
  for (const auto& v : mgr->views()) {
    if (v.kind != policy::GrantKind::data) {
      EXPECT_TRUE(v.quotas.empty()) << v.dir_name;
      continue;
    }
    ASSERT_EQ(v.quotas.size(), 1u) << v.dir_name;
    EXPECT_EQ(v.quotas[0], (policy::QuotaSpec{"apps/notes", {kG, 10}}));
    ++limited;
  }
  EXPECT_GT(limited, 0u);
  // No filesystem counts it here (the manager alone): usage says so, in one line (a runtime
  // failure: exit 1).
  const json r = call("usage", {{"target", "notes"}});
  EXPECT_EQ(r.value("code", 0), 1) << r.dump();
  EXPECT_EQ(r.value("error", ""), "usage: apps/notes: portalfsd is still counting it (its first walk; see portalctl status)");
  ok("quota.clear", {{"target", "notes"}});
  for (const auto& v : mgr->views()) EXPECT_TRUE(v.quotas.empty());
  EXPECT_TRUE(limits.empty());
}

TEST_F(QuotaTest, RefusalsChangeNothing) {
  refused("quota.set", {{"target", "nope"}, {"bytes", kG}}, "quota set: no app or share named \"nope\"");
  refused("quota.set", {{"target", "notes"}, {"bytes", 0}}, "bytes");
  refused("quota.set", {{"target", "notes"}, {"bytes", kG}, {"inodes", -1}}, "inodes");
  refused("quota.set", {{"target", "notes"}, {"bytes", kG}, {"what", 1}}, "what");
  refused("quota.set", {{"target", "apps/nope"}, {"bytes", kG}}, "no app nope");
  refused("quota.clear", {{"target", "notes"}}, "quota clear: app notes has no quota");
  refused("usage", {{"target", "notes"}}, "usage: app notes has no quota; set one with: portalctl quota set notes SIZE");
  ASSERT_TRUE(call("share.create", {{"name", "notes"}}).value("ok", false));
  refused("quota.set", {{"target", "notes"}, {"bytes", kG}}, "notes is both an app and a share; name it apps/notes or shared/notes");
  ok("quota.set", {{"target", "shared/notes"}, {"bytes", kG}});
  EXPECT_EQ(saved().count("shared/notes"), 1u);
}

// APP:SHARE: what the app created in the share, always accounted by portalfsd (a project quota
// counts a file for the share alone), even with project quotas in force; every view of the
// share carries it (a file counts for its creator, whichever app changes it).
TEST_F(QuotaTest, AnAppWithinAShareIsAccountedByTheDaemonInEveryViewOfTheShare) {
  ASSERT_TRUE(call("app.install", {{"manifest", R"({"name": "photos", "data_dirs": [
    {"path": "/media", "shared_dir": "own_media", "access": "read-write"}]})"},
                                   {"source", "app.json"}})
                  .value("ok", false));
  ok("quota.set", {{"target", "own_media"}, {"bytes", 4 * kG}});
  const std::string out = ok("quota.set", {{"target", "notes:own_media"}, {"bytes", kG}, {"inodes", 5}});
  EXPECT_THAT(out, HasSubstr("quota on app notes in share own_media: 1G, 5 inodes (accounted by portalfsd"));
  QuotaRecord want{100001, kG, 5};
  want.by_daemon = true;
  EXPECT_EQ(saved().at("notes:own_media"), want);
  EXPECT_EQ(saved().at("shared/own_media").by_daemon, false);
  std::size_t shared_views = 0;
  for (const auto& v : mgr->views()) {
    if (v.kind != policy::GrantKind::shared) {
      EXPECT_TRUE(v.quotas.empty()) << v.app << " " << v.dir_name;
      continue;
    }
    ++shared_views;
    EXPECT_EQ(v.quotas, (std::vector<policy::QuotaSpec>{{"notes:own_media", {kG, 5}}})) << v.app;
  }
  EXPECT_EQ(shared_views, 2u);  // notes' and photos'
  // Kept across a restart of the manager.
  start();
  EXPECT_EQ(saved().at("notes:own_media"), want);
  const json r = call("usage", {{"target", "notes:own_media"}}, true);
  EXPECT_EQ(r.value("code", 0), 1) << r.dump();  // nothing counts it here (no filesystem)
  EXPECT_EQ(r.value("error", ""), "usage: notes:own_media: portalfsd is still counting it (its first walk; see portalctl status)");
  ok("quota.clear", {{"target", "notes:own_media"}});
  EXPECT_EQ(saved().at("notes:own_media").bytes, 0u);
  for (const auto& v : mgr->views()) EXPECT_TRUE(v.quotas.empty());
}

TEST_F(QuotaTest, AppWithinAShareRefusalsChangeNothing) {
  ASSERT_TRUE(call("share.create", {{"name", "other"}}).value("ok", false));
  refused("quota.set", {{"target", "nope:own_media"}, {"bytes", kG}},
          "quota set: \"nope:own_media\": no app named nope");
  refused("quota.set", {{"target", "notes:nope"}, {"bytes", kG}}, "quota set: \"notes:nope\": no share named nope");
  refused("quota.set", {{"target", "notes:other"}, {"bytes", kG}},
          "quota set: \"notes:other\": app notes has no grant of share other");
  for (const char* bad : {":own_media", "notes:", "notes:own_media:x", "notes:shared/own_media"}) {
    refused("quota.set", {{"target", bad}, {"bytes", kG}}, "expected APP:SHARE");
  }
  refused("quota.clear", {{"target", "notes:own_media"}}, "quota clear: app notes in share own_media has no quota");
  refused("usage", {{"target", "notes:own_media"}},
          "usage: app notes in share own_media has no quota; set one with: portalctl quota set notes:own_media SIZE");
  EXPECT_EQ(saved().count("notes:own_media"), 0u);
}

TEST_F(QuotaTest, UsageShowsUsedLimitAndPercent) {
  EXPECT_EQ(ok("usage", {}, true), "[]\n");
  ok("quota.set", {{"target", "notes"}, {"bytes", 10 * kG}, {"inodes", 1000}});
  ok("quota.set", {{"target", "own_media"}, {"bytes", kG}});
  used[100000] = {9 * kG + kG / 2, 250, 0, 0};
  used[100001] = {kG / 4, 3, 0, 0};
  const json all = json::parse(ok("usage", {}, true));
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0], (json{{"target", "apps/notes"}, {"kind", "app"}, {"name", "notes"}, {"project_id", 100000},
                          {"bytes_used", 9 * kG + kG / 2}, {"bytes_limit", 10 * kG}, {"bytes_percent", 95},
                          {"inodes_used", 250}, {"inodes_limit", 1000}, {"inodes_percent", 25},
                          {"enforced_by", "kernel"}}));
  EXPECT_EQ(all[1]["bytes_percent"], 25);
  EXPECT_EQ(all[1]["inodes_limit"], 0);
  const std::string text = ok("usage", {{"target", "notes"}});
  EXPECT_THAT(text, HasSubstr("TARGET"));
  EXPECT_THAT(text, HasSubstr("apps/notes              9.5G      10G       95%   250       1000      25%\n"));
  EXPECT_THAT(text, Not(HasSubstr("own_media")));
}

TEST_F(QuotaTest, StatusSaysWhichModeIsInForce) {
  EXPECT_THAT(ok("status"), HasSubstr("quota: project quotas of the storage root's file system, enforced by the kernel (0 set)\n"));
  probe_says = "the storage root's file system (ext4) has no project quotas turned on";
  EXPECT_THAT(ok("status"), HasSubstr("quota: accounted by portalfsd, its limited views served without passthrough (0 set; "
                                      "the storage root's file system (ext4) has no project quotas turned on)\n"));
  const json s = json::parse(ok("status", {}, true));
  EXPECT_EQ(s["quota"]["mode"], "daemon");
  // Limits set, then the disk mounted without prjquota: status says they are not enforced.
  probe_says.clear();
  ok("quota.set", {{"target", "notes"}, {"bytes", kG}});
  EXPECT_THAT(ok("status"), HasSubstr("(1 set)\n"));
  probe_says = "the storage root's file system (ext4) has no project quotas turned on";
  EXPECT_THAT(ok("status"), HasSubstr("quota: 1 of 1 set NOT ENFORCED (project quotas of the kernel; the storage root's file "
                                      "system (ext4) has no project quotas turned on)\n"));
}

TEST_F(QuotaTest, CrossingNinetyAndAHundredPercentIsLoggedAndAudited) {
  common::AuditLog audit(tmp / "audit");
  mgr->set_audit(&audit);
  mgr->start();
  ok("quota.set", {{"target", "notes"}, {"bytes", 100 * 1024}});
  used[100000] = {50 * 1024, 1, 0, 0};
  std::this_thread::sleep_for(1500ms);  // the worker looks every second: below 90 %, nothing
  used[100000] = {95 * 1024, 1, 0, 0};
  const std::string file = tmp / "audit/notes.jsonl";
  auto lines_with = [&](const std::string& what) {
    std::string text;
    try {
      text = read_file(file);
    } catch (const std::exception&) {
    }
    std::size_t n = 0;
    for (std::size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
    return n;
  };
  for (int i = 0; i < 50 && lines_with("\"op\":\"quota\"") < 1; ++i) std::this_thread::sleep_for(100ms);
  EXPECT_EQ(lines_with("\"op\":\"quota\""), 1u);
  EXPECT_EQ(lines_with("\"result\":\"90%\""), 1u);
  std::this_thread::sleep_for(1500ms);  // still at 90 %: no second line
  EXPECT_EQ(lines_with("\"op\":\"quota\""), 1u);
  used[100000] = {100 * 1024, 1, 0, 0};
  for (int i = 0; i < 50 && lines_with("\"result\":\"100%\"") < 1; ++i) std::this_thread::sleep_for(100ms);
  EXPECT_EQ(lines_with("\"result\":\"100%\""), 1u);
  EXPECT_THAT(read_file(file), HasSubstr("102400 of 100K bytes (100%)"));
  mgr.reset();  // its worker posts to `audit`: stopped before `audit` goes
}

TEST(QuotaState, ReadingIsStrict) {
  State s = fresh_state();
  s.quotas["apps/notes"] = {100000, 1024, 0};
  s.quotas["shared/own_media"] = {100001, 0, 5};
  EXPECT_EQ(state_from_json(to_json(s)), s);
  auto doc = to_json(s);
  doc["quotas"]["shared/own_media"]["project_id"] = 100000;
  EXPECT_THROW(state_from_json(doc), std::exception);  // one id twice
  doc = to_json(s);
  doc["quotas"]["notes"] = doc["quotas"]["apps/notes"];
  EXPECT_THROW(state_from_json(doc), std::exception);
  doc = to_json(s);
  doc["quotas"]["apps/notes"]["project_id"] = 5;  // below the ids portalfs gives
  EXPECT_THROW(state_from_json(doc), std::exception);
  EXPECT_FALSE(to_json(fresh_state()).contains("quotas"));
}

}  // namespace
}  // namespace portalfs::mountmgr
