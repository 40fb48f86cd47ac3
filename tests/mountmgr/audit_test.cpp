// SPDX-License-Identifier: MIT
// The audit trail's writer (common/audit.hpp): the line format, rotation by size, a full queue
// (dropped records counted in one line), flushing on destruction; --since; and the records of
// the mount manager's changes (mountmgr/audit_changes.hpp).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "common/audit.hpp"
#include "mountmgr/audit_changes.hpp"
#include "tests/testutil/process.hpp"
#include "tests/testutil/temp_dir.hpp"

namespace portalfs::common {
namespace {

using nlohmann::json;
using testutil::read_file;
using testutil::TempDir;

std::vector<json> lines_of(const std::string& path) {
  std::ifstream in(path);
  std::vector<json> out;
  for (std::string line; std::getline(in, line);) out.push_back(json::parse(line));
  return out;
}

AuditRecord rec(const std::string& app, const std::string& op, const std::string& path) {
  AuditRecord r;
  r.app = app;
  r.view = "shared/music";
  r.op = op;
  r.path = path;
  r.result = "ok";
  return r;
}

TEST(AuditLog, WritesOneJsonLinePerRecordPerApp) {
  TempDir dir("audit");
  {
    AuditLog log(dir / "audit");
    AuditRecord r = rec("alpha", "rename", "/a");
    r.time = parse_time("2026-12-06T22:40:01.123Z");
    r.to = "/b";
    log.post(r);
    AuditRecord d = rec("beta", "create", "/c.txt");
    d.time = parse_time("2026-12-06T22:40:02Z");
    d.result = errno_name(EROFS);
    log.post(d);
    log.post(rec("", "share.create", ""));
    log.flush();
    EXPECT_EQ(read_file(dir / "audit/alpha.jsonl"),
              R"({"app":"alpha","op":"rename","path":"/a","result":"ok","time":"2026-12-06T22:40:01.123Z","to":"/b","view":"shared/music"})"
              "\n");
    EXPECT_EQ(read_file(dir / "audit/beta.jsonl"),
              R"({"app":"beta","op":"create","path":"/c.txt","result":"EROFS","time":"2026-12-06T22:40:02.000Z","view":"shared/music"})"
              "\n");
    ASSERT_EQ(lines_of(dir / "audit/_platform.jsonl").size(), 1u);
  }
  EXPECT_EQ(std::filesystem::status(dir / "audit").permissions(), std::filesystem::perms::owner_all);
}

// Hundreds of apps must not cost the daemon an fd each for good: the files of apps that wrote
// nothing in the last batch are closed once more than a few are open, and all once it is quiet.
TEST(AuditLog, KeepsFewFilesOpenWhateverTheNumberOfApps) {
  TempDir dir("audit");
  const auto audit_fds = [&] {
    size_t n = 0;
    for (const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) {
      std::error_code ec;
      const auto target = std::filesystem::read_symlink(e.path(), ec);
      if (!ec && target.string().starts_with(std::string(dir / "audit"))) ++n;
    }
    return n;
  };
  AuditLog log(dir / "audit");
  for (int i = 0; i < 100; ++i) {
    log.post(rec("app" + std::to_string(i), "create", "/x"));
    log.flush();
  }
  EXPECT_LE(audit_fds(), 17u);
  log.post(rec("app3", "unlink", "/x"));  // a closed file opens again, and appends
  log.flush();
  const auto lines = lines_of(dir / "audit/app3.jsonl");
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[1]["op"], "unlink");
  for (int i = 0; i < 100; ++i) EXPECT_EQ(lines_of(dir / ("audit/app" + std::to_string(i) + ".jsonl")).size(), i == 3 ? 2u : 1u);
  // Quiet for a while: none is held open.
  EXPECT_TRUE(testutil::wait_until([&] { return audit_fds() == 0; }, std::chrono::seconds(2)));
}

TEST(AuditLog, RotatesBySizeKeepingN) {
  TempDir dir("audit");
  AuditLog::Options o;
  o.max_bytes = 1000;
  o.keep = 2;
  {
    AuditLog log(dir / "audit", o);
    for (int i = 0; i < 40; ++i) log.post(rec("alpha", "create", "/f" + std::to_string(i)));
  }  // the destructor writes what is queued
  const std::string base = dir / "audit/alpha.jsonl";
  ASSERT_TRUE(std::filesystem::exists(base + ".1"));
  ASSERT_TRUE(std::filesystem::exists(base + ".2"));
  EXPECT_FALSE(std::filesystem::exists(base + ".3"));
  for (const auto& p : {base, base + ".1", base + ".2"}) EXPECT_LE(std::filesystem::file_size(p), 1000u) << p;
  // Oldest first across .2, .1 and the current file: consecutive, ending with the last.
  std::vector<json> all;
  for (const auto& p : {base + ".2", base + ".1", base}) {
    auto part = lines_of(p);
    all.insert(all.end(), part.begin(), part.end());
  }
  ASSERT_FALSE(all.empty());
  EXPECT_EQ(all.back()["path"], "/f39");
  const int first = std::stoi(all.front()["path"].get<std::string>().substr(2));
  EXPECT_GT(first, 0);  // the oldest went with the third rotation
  for (size_t i = 0; i < all.size(); ++i) EXPECT_EQ(all[i]["path"], "/f" + std::to_string(first + static_cast<int>(i)));
}

TEST(AuditLog, AFullQueueDropsAndSaysHowMany) {
  TempDir dir("audit");
  AuditLog::Options o;
  o.queue = 4;
  // 5000 posts in a loop (~0.1 us each) outrun a writer that makes one write() per line: a
  // queue of 4 overflows many times.
  {
    AuditLog log(dir / "audit", o);
    for (int i = 0; i < 5000; ++i) log.post(rec("alpha", "create", "/f" + std::to_string(i)));
  }
  const auto lines = lines_of(dir / "audit/alpha.jsonl");
  uint64_t written = 0, dropped = 0;
  for (const auto& l : lines) {
    if (l["op"] == "dropped") {
      const std::string detail = l["detail"];
      EXPECT_THAT(detail, ::testing::EndsWith(" record(s) dropped: the audit queue was full"));
      dropped += std::stoull(detail);
    } else {
      ++written;
    }
  }
  EXPECT_EQ(written + dropped, 5000u);  // every record is either written or counted
  EXPECT_GT(dropped, 0u);                // 5000 posts do not fit a queue of 4
}

TEST(AuditLog, ParsesSince) {
  const auto now = parse_time("2026-12-06T22:00:00Z");
  EXPECT_EQ(parse_since("10m", now), parse_time("2026-12-06T21:50:00Z"));
  EXPECT_EQ(parse_since("2h", now), parse_time("2026-12-06T20:00:00Z"));
  EXPECT_EQ(parse_since("1d", now), parse_time("2026-12-05T22:00:00Z"));
  EXPECT_EQ(parse_since("2026-12-01T01:02:03", now), parse_time("2026-12-01T01:02:03.000Z"));
  for (const char* bad : {"", "m", "10", "10x", "yesterday", "2026-12-01", "2026-12-01T01:02:03+01"}) {
    EXPECT_FALSE(parse_since(bad, now)) << bad;
  }
}

TEST(AuditChanges, InstallGrantRevokeRemoveAndShares) {
  mountmgr::State before;
  mountmgr::State after;
  after.apps["alpha"].edit().version = "1";
  after.shares["music"] = policy::Owner{0, 0};
  policy::ViewSpec music;
  music.app = "alpha";
  music.kind = policy::GrantKind::shared;
  music.dir_name = "music";
  music.access = policy::Access::read;
  auto records = mountmgr::state_changes(before, after, {}, {music});
  std::vector<std::string> seen;
  for (const auto& r : records) seen.push_back(r.app + " " + r.view + " " + r.op + " " + r.detail);
  EXPECT_THAT(seen, ::testing::ElementsAre("alpha  app.install version 1", "alpha shared/music grant read",
                                           " shared/music share.create owner 0:0"));

  policy::ViewSpec rw = music;
  rw.access = policy::Access::read_write;
  records = mountmgr::state_changes(after, after, {music}, {rw});
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0].op + " " + records[0].detail, "grant read -> read-write");
  // Turning the audit of reads on (or off) is a grant change of its own.
  policy::ViewSpec audited = rw;
  audited.audit_reads = true;
  records = mountmgr::state_changes(after, after, {rw}, {audited});
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0].op + " " + records[0].detail, "grant read-write -> read-write +audit-reads");

  records = mountmgr::state_changes(after, before, {rw}, {});
  seen.clear();
  for (const auto& r : records) seen.push_back(r.app + " " + r.view + " " + r.op);
  EXPECT_THAT(seen, ::testing::ElementsAre("alpha  app.remove", "alpha shared/music revoke", " shared/music share.remove"));
}

// Many apps, views in app order (as build_views gives them) or not: only the apps whose views
// changed give records, whichever way the lists are compared.
TEST(AuditChanges, OnlyTheAppsWhoseViewsChangedGiveGrantRecords) {
  auto view = [](const std::string& app, const std::string& dir, policy::Access access) {
    policy::ViewSpec v;
    v.app = app;
    v.kind = policy::GrantKind::shared;
    v.dir_name = dir;
    v.access = access;
    return v;
  };
  using policy::Access;
  const policy::ViewSpecs before = {view("a", "music", Access::read),  view("b", "music", Access::read),
                                    view("b", "photos", Access::read), view("c", "music", Access::read),
                                    view("e", "music", Access::read)};
  const policy::ViewSpecs after = {view("a", "music", Access::read),       view("b", "music", Access::read),
                                   view("b", "photos", Access::read_write), view("b", "video", Access::read),
                                   view("d", "music", Access::read),       view("e", "music", Access::read)};
  const mountmgr::State state;
  auto seen = [&](const policy::ViewSpecs& from, const policy::ViewSpecs& to) {
    std::vector<std::string> out;
    for (const auto& r : mountmgr::state_changes(state, state, from, to)) {
      out.push_back(r.app + " " + r.view + " " + r.op + " " + r.detail);
    }
    std::sort(out.begin(), out.end());
    return out;
  };
  const std::vector<std::string> expected = {"b shared/photos grant read -> read-write", "b shared/video grant read",
                                             "c shared/music revoke read", "d shared/music grant read"};
  EXPECT_EQ(seen(before, after), expected);
  policy::ViewSpecs shuffled = after;  // not in app order: compared as a whole, same records
  std::reverse(shuffled.begin(), shuffled.end());
  EXPECT_EQ(seen(before, shuffled), expected);
  EXPECT_TRUE(seen(after, after).empty());
}

}  // namespace
}  // namespace portalfs::common
