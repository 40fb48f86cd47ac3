// SPDX-License-Identifier: MIT
// The state document and its store: strict reading, atomic saves with a .bak, refusal of
// torn/corrupt/garbage/unreadable files with one line, recovery from the .bak, the lock.

#include "mountmgr/state_store.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <thread>

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
  flipped.apps["navidrome"].edit().admin_grants[1].audit_reads = false;
  EXPECT_NE(flipped, s);
  EXPECT_EQ(state_from_json(to_json(flipped)), flipped);
}

// A copy of a State shares its app records; edit() copies the one it changes, and only while
// it is shared. States compare by value, whether or not they share records.
TEST(StateTest, AppRecordsAreSharedUntilEdited) {
  State a = fresh_state();
  a.apps["alpha"].edit().version = "1";
  a.apps["beta"].edit().version = "1";
  const AppRecord* alpha = &*a.apps.at("alpha");
  a.apps["alpha"].edit().version = "2";  // not shared: changed in place
  EXPECT_EQ(&*a.apps.at("alpha"), alpha);

  State b = a;
  EXPECT_TRUE(b.apps.at("alpha").same_object(a.apps.at("alpha")));
  b.apps["alpha"].edit().version = "3";
  EXPECT_FALSE(b.apps.at("alpha").same_object(a.apps.at("alpha")));
  EXPECT_EQ(a.apps.at("alpha")->version, "2") << "the state copied from was changed";
  EXPECT_TRUE(b.apps.at("beta").same_object(a.apps.at("beta")));
  EXPECT_NE(a, b);

  State c = state_from_json(to_json(a));  // the same records, other objects
  EXPECT_FALSE(c.apps.at("beta").same_object(a.apps.at("beta")));
  EXPECT_EQ(c, a);
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
  EXPECT_EQ(s.apps.at("navidrome")->installed_as, "");
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


// ---- the journal -------------------------------------------------------------------------------

// `base` with n more apps, app0 .. app<n-1>.
State with_apps(State base, int n) {
  for (int i = 0; i < n; ++i) {
    AppRecord app;
    app.version = std::to_string(i);
    app.grants = {{policy::GrantKind::data, "data", "/data", policy::Access::read_write, std::nullopt}};
    app.data_dirs = {{"data", std::to_string(i), false}};
    base.apps["app" + std::to_string(i)] = app;
  }
  return base;
}

std::size_t lines_of(const std::string& text) { return static_cast<std::size_t>(std::count(text.begin(), text.end(), '\n')); }

TEST(StateJournalTest, ASaveAppendsOnlyWhatChanged) {
  TempDir tmp;
  StateStore store(tmp.path());
  (void)store.load(false);
  const State a = with_apps(rich_state(), 50);
  store.save(a);  // the first save writes the document whole
  const std::string document = read_file(tmp / "state.json");
  State b = a;
  b.apps["app7"].edit().version = "changed";
  b.apps.erase("app9");
  store.save(b, a);
  EXPECT_EQ(read_file(tmp / "state.json"), document) << "the document is not rewritten";
  const std::string journal = read_file(tmp / "state.journal");
  ASSERT_EQ(lines_of(journal), 1u);
  const auto record = nlohmann::json::parse(journal);
  // The first record after the document's.
  EXPECT_EQ(record["seq"], nlohmann::json::parse(document)["journal_seq"].get<uint64_t>() + 1);
  EXPECT_EQ(record["apps"].size(), 2u);  // app7 as it is now, app9 gone
  EXPECT_TRUE(record["apps"]["app9"].is_null());
  EXPECT_EQ(record["apps"]["app7"]["version"], "changed");
  EXPECT_FALSE(record.contains("rest")) << "nothing but apps changed";
  EXPECT_LT(journal.size(), 400u);

  State c = b;
  c.shares["photos"] = {1, 1};
  store.save(c, b);
  EXPECT_TRUE(nlohmann::json::parse(read_file(tmp / "state.journal").substr(journal.size())).contains("rest"));
  store.save(c, c);  // no change: nothing written
  EXPECT_EQ(lines_of(read_file(tmp / "state.journal")), 2u);
  EXPECT_EQ(read_state_dir(tmp.path()), c);

}

TEST(StateJournalTest, ItLoadsBackAndCarriesOn) {
  TempDir tmp;
  State last;
  {
    StateStore store(tmp.path());
    (void)store.load(false);
    State prev = fresh_state();
    store.save(prev);
    for (int i = 1; i <= 5; ++i) {
      State next = with_apps(fresh_state(), i);
      store.save(next, prev);
      prev = next;
    }
    last = prev;
  }
  StateStore store(tmp.path());
  auto loaded = store.load(false);
  EXPECT_EQ(loaded.state, last);
  State next = with_apps(fresh_state(), 6);
  store.save(next, loaded.state);
  EXPECT_EQ(lines_of(read_file(tmp / "state.journal")), 6u);
  EXPECT_EQ(read_state_dir(tmp.path()), next);
}

// A crash in the middle of a write leaves the last line torn: its request was never answered
// (the fdatasync had not returned), so it is dropped, and cut off before the next record.
TEST(StateJournalTest, ATornLastRecordIsDroppedAndCutOff) {
  TempDir tmp;
  const State one = with_apps(fresh_state(), 1);
  {
    StateStore store(tmp.path());
    (void)store.load(false);
    store.save(fresh_state());
    store.save(one, fresh_state());
  }
  const std::string good = read_file(tmp / "state.journal");
  write_file(tmp / "state.journal", good + R"({"seq": 2, "apps": {"app1": {"vers)");
  StateStore store(tmp.path());
  auto loaded = store.load(false);
  EXPECT_EQ(loaded.state, one);
  EXPECT_EQ(read_file(tmp / "state.journal"), good);
  const State two = with_apps(fresh_state(), 2);
  store.save(two, one);
  EXPECT_EQ(read_state_dir(tmp.path()), two);
  EXPECT_EQ(lines_of(read_file(tmp / "state.journal")), 2u);
}

TEST(StateJournalTest, ABadRecordBeforeTheLastIsRefusedWithOneLine) {
  TempDir tmp;
  {
    StateStore store(tmp.path());
    (void)store.load(false);
    store.save(fresh_state());
    store.save(with_apps(fresh_state(), 1), fresh_state());
  }
  const std::string good = read_file(tmp / "state.journal");
  const auto first = nlohmann::json::parse(good)["seq"].get<uint64_t>();
  const std::string skipped = R"({"seq": )" + std::to_string(first + 2) + R"(, "apps": {}})" + "\n";
  for (const std::string& bad : {std::string("garbage\n"), std::string(R"({"seq": 2, "apps": 3})") + "\n", skipped}) {
    write_file(tmp / "state.journal", good + bad + R"({"seq": 99, "apps": {}})" + "\n");
    const std::string message = state_error(tmp.path());
    EXPECT_THAT(message, HasSubstr(tmp / "state.journal: "));
    EXPECT_THAT(message, HasSubstr("--recover-from-backup"));
    EXPECT_EQ(message.find('\n'), std::string::npos) << message;
  }
  EXPECT_THAT(state_error(tmp.path()), HasSubstr("record " + std::to_string(first + 2) + " follows record " + std::to_string(first) +
                                               ": the records between are missing"));
  // Recovery sets the journal aside and starts from the document.
  StateStore store(tmp.path());
  EXPECT_EQ(store.load(true).state, fresh_state());
  EXPECT_TRUE(std::filesystem::exists(tmp / "state.journal.corrupt"));
}

// Once the journal outgrows the document it is folded in. The previous document and its journal
// stay a pair that loads: recovery from a bad state.json loses nothing.
TEST(StateJournalTest, CompactionKeepsABackupPairThatLoadsWhole) {
  TempDir tmp;
  State prev = fresh_state();
  {
    StateStore store(tmp.path());
    store.set_compaction_floor(1);
    (void)store.load(false);
    store.save(prev);
    for (int i = 1; i <= 12; ++i) {
      State next = with_apps(fresh_state(), i);
      store.save(next, prev);
      prev = next;
      EXPECT_EQ(read_state_dir(tmp.path()), next) << i;
    }
  }
  EXPECT_TRUE(std::filesystem::exists(tmp / "state.json.bak"));
  EXPECT_TRUE(std::filesystem::exists(tmp / "state.journal.bak"));
  write_file(tmp / "state.json", "{\"schema_version\": 1, \"apps\": {");
  StateStore store(tmp.path());
  auto loaded = store.load(true);
  EXPECT_TRUE(loaded.from_backup);
  EXPECT_EQ(loaded.state.apps.size(), prev.apps.size());
  EXPECT_EQ(loaded.state, prev);
}

// A state.json from before the journal (no journal_seq) loads as it is; a journal left beside it
// is not its own and is not applied. The next save writes the document whole and starts one.
TEST(StateJournalTest, AnOlderStateFileLoadsAndTheNextSaveStartsTheJournal) {
  TempDir tmp;
  write_file(tmp / "state.json", to_json(rich_state()).dump(2));
  write_file(tmp / "state.journal", R"({"seq": 1, "apps": {"navidrome": null}})" "\n");
  StateStore store(tmp.path());
  auto loaded = store.load(false);
  EXPECT_EQ(loaded.state, rich_state());
  State next = loaded.state;
  next.apps["navidrome"].edit().version = "4";
  store.save(next, loaded.state);
  // Past the record left beside it, so that no reader ever applies that one.
  EXPECT_GT(nlohmann::json::parse(read_file(tmp / "state.json"))["journal_seq"].get<uint64_t>(), 1u);
  EXPECT_FALSE(std::filesystem::exists(tmp / "state.journal"));
  EXPECT_EQ(read_state_dir(tmp.path()), next);
  State after = next;
  after.apps["navidrome"].edit().version = "5";
  store.save(after, next);
  EXPECT_EQ(lines_of(read_file(tmp / "state.journal")), 1u);
  EXPECT_EQ(read_state_dir(tmp.path()), after);
}

// kill -9 at any moment of a stream of saves: what is on disk loads, and holds every change
// whose save returned (the child says how far it got before each save) and nothing torn.
TEST(StateJournalTest, KillNineMidStreamLeavesALoadableState) {
  for (int round = 0; round < 8; ++round) {
    TempDir tmp;
    int pipe_fds[2];
    ASSERT_EQ(::pipe(pipe_fds), 0);
    const pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
      ::close(pipe_fds[0]);
      StateStore store(tmp.path());
      store.set_compaction_floor(4096);  // compactions happen in the stream too
      (void)store.load(false);
      State prev = fresh_state();
      store.save(prev);
      for (int i = 1;; ++i) {
        State next = with_apps(fresh_state(), i);
        store.save(next, prev);
        prev = std::move(next);
        // Only once the save returned: this many apps are promised.
        if (::write(pipe_fds[1], &i, sizeof i) != sizeof i) ::_exit(1);
      }
    }
    ::close(pipe_fds[1]);
    std::this_thread::sleep_for(std::chrono::milliseconds(30 + 37 * round));
    ASSERT_EQ(::kill(child, SIGKILL), 0);
    int status = 0;
    ASSERT_EQ(::waitpid(child, &status, 0), child);
    int promised = 0;
    int n = 0;
    while (::read(pipe_fds[0], &n, sizeof n) == sizeof n) promised = n;
    ::close(pipe_fds[0]);
    StateStore store(tmp.path());
    State loaded;
    ASSERT_NO_THROW(loaded = store.load(false).state) << "round " << round;
    const int apps = static_cast<int>(loaded.apps.size());
    EXPECT_GE(apps, promised) << "round " << round;
    EXPECT_LE(apps, promised + 1) << "round " << round;  // the save in flight may have landed
    EXPECT_EQ(loaded, with_apps(fresh_state(), apps)) << "round " << round;
  }
}

}  // namespace
}  // namespace portalfs::mountmgr
