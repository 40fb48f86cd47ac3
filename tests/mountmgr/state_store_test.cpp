// SPDX-License-Identifier: MIT
// The state document and its store: strict reading, atomic saves with a .bak, refusal of
// torn/corrupt/garbage/unreadable files with one line, recovery from the .bak, the lock.

#include "mountmgr/state_store.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "mountmgr/json_reader.hpp"
#include "tests/testutil/temp_dir.hpp"

namespace portalfs::mountmgr {
namespace {

using testutil::read_file;
using testutil::TempDir;
using testutil::write_file;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr auto kHint =
    "; start with --recover-from-backup to use state.json.bak, or move the file away to start empty";

State rich_state() {
  State s = fresh_state();
  s.shares["music"] = {1000, 1000};
  s.share_trash["music"] = 30 * 86400;
  AppRecord app;
  app.installed_as = "Navidrome";
  app.version = "3.2";
  app.uid_maps = {{0, 100000, 65536}};
  app.gid_maps = {{0, 100000, 65536}, {70000, 300000, 10}};
  app.grants = {{policy::GrantKind::data, "data", "/data", policy::Access::read_write, policy::Owner{1000, 1000}},
                {policy::GrantKind::data, "data/documents", "/data/documents", policy::Access::read_write, std::nullopt},
                {policy::GrantKind::shared, "music", "/music", policy::Access::read, std::nullopt}};
  app.admin_grants = {{policy::GrantKind::shared, "own_media", "/media", policy::Access::read_write, policy::Owner{1, 2}},
                      {policy::GrantKind::shared, "books", "/books", policy::Access::read, std::nullopt, {}, true}};
  app.revoked = {"music"};
  app.data_dirs = {{"data", "3.1", false}, {"data/documents", "3.2", false}, {"cache", "3.0", true}};
  app.storage_mounts = {{"/srv/x", "/x", true}};
  s.apps["navidrome"] = app;
  s.attachments = {{"navidrome", 4242, {{"/run/portalfs/fs/apps/navidrome/data/data", "/data", false}},
                    ProcessIdentity{4242, 987654321, 4, 4026532712, "5df01789-32de-436b-b19c-ee51f4da9472"}}};
  return s;
}

std::string state_error(const std::string& dir, bool recover = false) {
  try {
    StateStore store(dir);
    store.load(recover);
  } catch (const StateError& e) {
    return e.what();
  }
  return "";
}

TEST(StateTest, JsonRoundTrip) {
  const State s = rich_state();
  EXPECT_EQ(state_from_json(to_json(s)), s);
  EXPECT_EQ(state_from_json(nlohmann::json::parse(to_json(s).dump(2))), s);
  // A grant that audits reads says so; the others, as before the field existed, do not.
  const nlohmann::json admin = to_json(s)["apps"]["navidrome"]["admin_grants"];
  EXPECT_EQ(admin[1]["audit_reads"], true);
  EXPECT_FALSE(admin[0].contains("audit_reads"));
  State flipped = s;
  flipped.apps["navidrome"].admin_grants[1].audit_reads = false;
  EXPECT_NE(flipped, s);
  EXPECT_EQ(state_from_json(to_json(flipped)), flipped);
}

TEST(StateTest, AttachmentKeepsTheProcessIdentity) {
  const nlohmann::json a = to_json(rich_state())["attachments"][0];
  EXPECT_EQ(a["start_time"], 987654321);
  EXPECT_EQ(a["mnt_ns"], "4:4026532712");
  EXPECT_EQ(a["boot_id"], "5df01789-32de-436b-b19c-ee51f4da9472");
}

// A state file from before identities were kept still loads; the record has no identity (and
// is dropped at heal: tests/mountmgr/manager_test.cpp).
TEST(StateTest, AttachmentWithoutIdentityFromAnOlderFileLoads) {
  nlohmann::json doc = to_json(rich_state());
  doc["attachments"][0].erase("start_time");
  doc["attachments"][0].erase("mnt_ns");
  doc["attachments"][0].erase("boot_id");
  const State s = state_from_json(doc);
  ASSERT_EQ(s.attachments.size(), 1u);
  EXPECT_EQ(s.attachments[0].pid, 4242);
  EXPECT_EQ(s.attachments[0].process, std::nullopt);
  EXPECT_FALSE(to_json(s)["attachments"][0].contains("start_time"));  // never made up
}

// A state written before installed names were kept loads: the record knows no name.
TEST(StateTest, AnAppRecordWithoutItsInstalledNameLoads) {
  nlohmann::json doc = to_json(rich_state());
  ASSERT_EQ(doc["apps"]["navidrome"]["installed_as"], "Navidrome");
  doc["apps"]["navidrome"].erase("installed_as");
  const State s = state_from_json(doc);
  EXPECT_EQ(s.apps.at("navidrome").installed_as, "");
  EXPECT_FALSE(to_json(s)["apps"]["navidrome"].contains("installed_as")) << "written back as it was";
}

TEST(StateTest, FreshStateHasTheDefaultShares) {
  const State s = fresh_state();
  ASSERT_EQ(s.shares.size(), 2u);
  EXPECT_EQ(s.shares.at("own_media"), (policy::Owner{0, 0}));
  EXPECT_EQ(s.shares.at("own_documents"), (policy::Owner{0, 0}));
  EXPECT_TRUE(s.apps.empty());
}

struct SchemaCase {
  std::string name;
  std::function<void(nlohmann::json&)> edit;
  std::string pointer;
  std::string problem;
};

TEST(StateTest, StrictReadingNamesThePointer) {
  const std::vector<SchemaCase> cases = {
      {"unknown top field", [](auto& j) { j["extra"] = 1; }, "/extra", "unknown field"},
      {"unknown app field", [](auto& j) { j["apps"]["navidrome"]["color"] = "red"; }, "/apps/navidrome/color", "unknown field"},
      {"wrong type", [](auto& j) { j["apps"]["navidrome"]["version"] = 3; }, "/apps/navidrome/version",
       "expected a string, got 3"},
      {"installed name not a string", [](auto& j) { j["apps"]["navidrome"]["installed_as"] = 3; },
       "/apps/navidrome/installed_as", "expected a string, got 3"},
      {"missing field", [](auto& j) { j["apps"]["navidrome"].erase("data_dirs"); }, "/apps/navidrome/data_dirs",
       "missing, expected an array"},
      {"bad access", [](auto& j) { j["apps"]["navidrome"]["grants"][2]["access"] = "write"; },
       "/apps/navidrome/grants/2/access", R"(expected one of read, read-write, create-only, no-delete, own-files, got "write")"},
      {"audit_reads not a bool", [](auto& j) { j["apps"]["navidrome"]["admin_grants"][1]["audit_reads"] = "yes"; },
       "/apps/navidrome/admin_grants/1/audit_reads", R"(expected true or false, got "yes")"},
      {"bad owner", [](auto& j) { j["shares"]["music"]["owner"] = "1000"; }, "/shares/music/owner",
       R"(expected UID:GID (two integers from 0 to 4294967294), got "1000")"},
      {"bad trash", [](auto& j) { j["shares"]["music"]["trash"] = "forever"; }, "/shares/music/trash",
       R"(expected a retention like 30d, 12h, 45m or 90s (at most 3650d), or off, got "forever")"},
      {"trash off", [](auto& j) { j["shares"]["music"]["trash"] = "off"; }, "/shares/music/trash",
       R"(expected a retention (a share without a trash has no "trash"), got "off")"},
      {"escaping data dir", [](auto& j) { j["apps"]["navidrome"]["grants"][0]["name"] = "../../etc"; },
       "/apps/navidrome/grants/0/name", ""},
      {"bad pid", [](auto& j) { j["attachments"][0]["pid"] = -1; }, "/attachments/0/pid", ""},
      {"unknown attachment field", [](auto& j) { j["attachments"][0]["comm"] = "sleep"; }, "/attachments/0/comm",
       "unknown field"},
      {"start time without mnt_ns", [](auto& j) { j["attachments"][0].erase("mnt_ns"); }, "/attachments/0/mnt_ns",
       R"(missing, expected "DEV:INO")"},
      {"mnt_ns without start time", [](auto& j) { j["attachments"][0].erase("start_time"); },
       "/attachments/0/start_time", "missing, expected an integer"},
      {"no boot id", [](auto& j) { j["attachments"][0].erase("boot_id"); }, "/attachments/0/boot_id",
       "missing, expected a string"},
      {"only a boot id",
       [](auto& j) {
         j["attachments"][0].erase("start_time");
         j["attachments"][0].erase("mnt_ns");
       },
       "/attachments/0/start_time", "missing, expected an integer"},
      {"bad start time", [](auto& j) { j["attachments"][0]["start_time"] = -5; }, "/attachments/0/start_time", ""},
      {"bad mnt_ns", [](auto& j) { j["attachments"][0]["mnt_ns"] = "4026532712"; }, "/attachments/0/mnt_ns",
       R"(expected "DEV:INO" (two unsigned integers), got "4026532712")"},
      {"schema version", [](auto& j) { j["schema_version"] = 2; }, "/schema_version", ""},
      {"bad app name", [](auto& j) { j["apps"]["Bad Name"] = j["apps"]["navidrome"]; }, "/apps/Bad Name", ""},
  };
  for (const auto& c : cases) {
    nlohmann::json doc = to_json(rich_state());
    c.edit(doc);
    try {
      state_from_json(doc);
      ADD_FAILURE() << c.name << ": accepted";
    } catch (const FieldError& e) {
      EXPECT_EQ(e.pointer(), c.pointer) << c.name;
      if (!c.problem.empty()) {
        EXPECT_EQ(e.problem(), c.problem) << c.name;
      }
    }
  }
}

TEST(StateStoreTest, MissingFileIsFreshState) {
  TempDir tmp;
  StateStore store(tmp / "state");
  const auto loaded = store.load(false);
  EXPECT_TRUE(loaded.fresh);
  EXPECT_EQ(loaded.state, fresh_state());
  EXPECT_FALSE(std::filesystem::exists(tmp / "state/state.json"));  // loading writes nothing
}

TEST(StateStoreTest, SaveThenLoad) {
  TempDir tmp;
  {
    StateStore store(tmp.path());
    (void)store.load(false);
    EXPECT_NO_THROW(store.save(rich_state()));
  }
  StateStore store(tmp.path());
  const auto loaded = store.load(false);
  EXPECT_FALSE(loaded.fresh);
  EXPECT_EQ(loaded.state, rich_state());
  struct stat st {};
  ASSERT_EQ(::stat((tmp / "state.json").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  EXPECT_FALSE(std::filesystem::exists(tmp / "state.json.tmp"));
}

TEST(StateStoreTest, SaveKeepsThePreviousGoodCopyAsBak) {
  TempDir tmp;
  StateStore store(tmp.path());
  (void)store.load(false);
  State a = fresh_state();
  State b = rich_state();
  ASSERT_NO_THROW(store.save(a));
  EXPECT_FALSE(std::filesystem::exists(tmp / "state.json.bak"));  // nothing before the first save
  ASSERT_NO_THROW(store.save(b));
  EXPECT_EQ(state_from_json(nlohmann::json::parse(read_file(tmp / "state.json"))), b);
  EXPECT_EQ(state_from_json(nlohmann::json::parse(read_file(tmp / "state.json.bak"))), a);
  ASSERT_NO_THROW(store.save(a));
  EXPECT_EQ(state_from_json(nlohmann::json::parse(read_file(tmp / "state.json.bak"))), b);
}

// A save never writes into the file a reader has: the old inode keeps the old whole document
// and state.json is the new whole document. (A crash between the steps leaves one or the other.)
TEST(StateStoreTest, SaveReplacesAtomically) {
  TempDir tmp;
  StateStore store(tmp.path());
  (void)store.load(false);
  ASSERT_NO_THROW(store.save(fresh_state()));
  const std::string old_text = read_file(tmp / "state.json");
  const int old_fd = ::open((tmp / "state.json").c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(old_fd, 0);
  struct stat before {};
  ASSERT_EQ(::fstat(old_fd, &before), 0);

  ASSERT_NO_THROW(store.save(rich_state()));
  std::string seen(static_cast<std::size_t>(before.st_size), '\0');
  ASSERT_EQ(::pread(old_fd, seen.data(), seen.size(), 0), before.st_size);
  ::close(old_fd);
  EXPECT_EQ(seen, old_text);
  struct stat after {};
  ASSERT_EQ(::stat((tmp / "state.json").c_str(), &after), 0);
  EXPECT_NE(after.st_ino, before.st_ino);
  EXPECT_EQ(state_from_json(nlohmann::json::parse(read_file(tmp / "state.json"))), rich_state());
}

// A crash while the temp file was written leaves it behind, torn: the old state.json is what
// loads, and the next save overwrites the leftover.
TEST(StateStoreTest, TornTempFileFromACrashIsIgnored) {
  TempDir tmp;
  {
    StateStore store(tmp.path());
    (void)store.load(false);
    ASSERT_NO_THROW(store.save(rich_state()));
  }
  write_file(tmp / "state.json.tmp", R"({"schema_version": 1, "apps": {"nav)");
  StateStore store(tmp.path());
  EXPECT_EQ(store.load(false).state, rich_state());
  ASSERT_NO_THROW(store.save(fresh_state()));
  EXPECT_FALSE(std::filesystem::exists(tmp / "state.json.tmp"));
}

TEST(StateStoreTest, BadFilesAreRefusedWithOneLine) {
  const std::string good = to_json(rich_state()).dump(2);
  struct Case {
    std::string name;
    std::function<void(const std::string& file)> make;
    std::string problem;
  };
  const std::vector<Case> cases = {
      {"torn", [&](const std::string& f) { write_file(f, good.substr(0, good.size() / 2)); },
       "is not valid JSON (torn or corrupt): parse error at line"},
      {"garbage", [](const std::string& f) { write_file(f, std::string("\x7f" "ELF\x02\x01\x01\0\0", 9)); },
       "is not valid JSON (torn or corrupt)"},
      {"empty", [](const std::string& f) { write_file(f, ""); }, "is empty (a torn write?)"},
      {"directory", [](const std::string& f) { std::filesystem::create_directory(f); },
       "is a directory, not a regular file"},
      {"symlink", [&](const std::string& f) { std::filesystem::create_symlink("/etc/passwd", f); },
       "is a symbolic link, not a regular file"},
      {"not an object", [](const std::string& f) { write_file(f, "[1, 2]"); }, "expected an object, got [1,2]"},
      {"schema", [&](const std::string& f) {
         auto j = to_json(rich_state());
         j["apps"]["navidrome"]["version"] = nullptr;
         write_file(f, j.dump());
       },
       "/apps/navidrome/version: expected a string, got null"},
      {"key with a newline", [&](const std::string& f) {
         auto j = to_json(rich_state());
         j["apps"]["a\nb"] = j["apps"]["navidrome"];
         write_file(f, j.dump());
       },
       "/apps/a\\nb: key: expected an app id"},
  };
  for (const auto& c : cases) {
    TempDir tmp;
    c.make(tmp / "state.json");
    const std::string message = state_error(tmp.path());
    EXPECT_THAT(message, HasSubstr(tmp / "state.json: " + c.problem)) << c.name;
    EXPECT_THAT(message, HasSubstr(kHint)) << c.name;
    EXPECT_THAT(message, Not(HasSubstr("\n"))) << c.name;
    EXPECT_TRUE(message.ends_with(kHint)) << c.name << ": " << message;
  }
}

TEST(StateStoreTest, RecoverFromBackup) {
  TempDir tmp;
  {
    StateStore store(tmp.path());
    (void)store.load(false);
    ASSERT_NO_THROW(store.save(rich_state()));
    ASSERT_NO_THROW(store.save(fresh_state()));  // .bak = rich_state
  }
  write_file(tmp / "state.json", R"({"schema_version": 1, "apps": {)");
  EXPECT_THAT(state_error(tmp.path()), HasSubstr("torn or corrupt"));

  StateStore store(tmp.path());
  const auto loaded = store.load(true);
  EXPECT_TRUE(loaded.from_backup);
  EXPECT_EQ(loaded.state, rich_state());
  // The bad file is kept aside, and the next save does not make it the backup.
  EXPECT_EQ(read_file(tmp / "state.json.corrupt"), R"({"schema_version": 1, "apps": {)");
  ASSERT_NO_THROW(store.save(loaded.state));
  EXPECT_EQ(state_from_json(nlohmann::json::parse(read_file(tmp / "state.json.bak"))), rich_state());
}

TEST(StateStoreTest, RecoverFromBadOrMissingBackupIsRefused) {
  TempDir tmp;
  write_file(tmp / "state.json", "{");
  std::string message = state_error(tmp.path(), true);
  EXPECT_THAT(message, HasSubstr("state.json.bak does not exist"));
  EXPECT_THAT(message, Not(HasSubstr("\n")));

  write_file(tmp / "state.json.bak", "nonsense");
  message = state_error(tmp.path(), true);
  EXPECT_THAT(message, HasSubstr(tmp / "state.json.bak: is not valid JSON"));
  EXPECT_THAT(message, HasSubstr("move state.json and state.json.bak away to start empty"));
  EXPECT_THAT(message, Not(HasSubstr("\n")));
  EXPECT_EQ(read_file(tmp / "state.json"), "{");  // nothing moved when refusing
}

TEST(StateStoreTest, RecoverFlagWithAGoodFileLoadsIt) {
  TempDir tmp;
  {
    StateStore store(tmp.path());
    ASSERT_NO_THROW(store.save(rich_state()));
  }
  StateStore store(tmp.path());
  const auto loaded = store.load(true);
  EXPECT_FALSE(loaded.from_backup);
  EXPECT_EQ(loaded.state, rich_state());
}

TEST(StateStoreTest, SecondStoreOnTheSameDirectoryIsRefused) {
  TempDir tmp;
  auto first = std::make_unique<StateStore>(tmp.path());
  try {
    StateStore second(tmp.path());
    FAIL() << "second lock taken";
  } catch (const StateError& e) {
    EXPECT_THAT(e.what(), HasSubstr(tmp / "state.lock: another portalfsd (pid " + std::to_string(::getpid()) + ")"));
    EXPECT_THAT(e.what(), HasSubstr("stop it first"));
  }
  first.reset();
  EXPECT_NO_THROW(StateStore again(tmp.path()));
}

TEST(StateStoreTest, SaveFailureReportsAndLeavesTheFile) {
  TempDir tmp;
  StateStore store(tmp / "state");
  ASSERT_NO_THROW(store.save(fresh_state()));
  // A directory where the temp file goes: the save can't even start.
  std::filesystem::create_directory(tmp / "state/state.json.tmp");
  try {
    store.save(rich_state());
    FAIL() << "saved";
  } catch (const StateError& e) {
    EXPECT_THAT(e.what(), HasSubstr("cannot save " + tmp / "state/state.json"));
  }
  EXPECT_EQ(state_from_json(nlohmann::json::parse(read_file(tmp / "state/state.json"))), fresh_state());
}

}  // namespace
}  // namespace portalfs::mountmgr
