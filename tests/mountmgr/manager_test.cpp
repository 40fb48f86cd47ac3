// SPDX-License-Identifier: MIT
// Manager::handle for every verb, on real temp directories: outputs, what lands on disk and in
// state.json, the ViewsChanged callback, and that a refused request changes nothing at all.
// attach/detach/heal run against fake AttachOps (the real ones need a container).

#include "mountmgr/manager.hpp"
#include "mountmgr/state_store.hpp"

#include <sys/stat.h>

#include <algorithm>
#include <filesystem>
#include <functional>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <map>
#include <optional>
#include <thread>

#include "common/log.hpp"
#include "mountmgr/control_protocol.hpp"
#include "mountmgr/manager_impl.hpp"
#include "mountmgr/request.hpp"
#include "mountmgr/state.hpp"
#include "policy/trash.hpp"
#include "tests/testutil/temp_dir.hpp"

namespace portalfs::mountmgr {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using testutil::read_file;
using testutil::TempDir;
using testutil::write_file;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr auto kNavidrome = R"({"v": "3.1", "name": "navidrome", "image": "deluan/navidrome",
  "data_dirs": ["/data", {"path": "/music", "shared_dir": "own_media", "access": "read"}]})";
constexpr auto kNavidromeNext = R"({"v": "3.2", "name": "navidrome",
  "data_dirs": ["/data", "/cache", {"path": "/music", "shared_dir": "own_media", "access": "read"}]})";

// Everything under a directory, for "nothing changed" comparisons: type, mode, owner and the
// content of every file (so state.json is included).
std::string snapshot(const std::string& dir) {
  std::map<std::string, std::string> entries;
  for (auto it = fs::recursive_directory_iterator(dir); it != fs::recursive_directory_iterator(); ++it) {
    const std::string path = it->path().string();
    struct stat st {};
    ::lstat(path.c_str(), &st);
    std::string line = std::to_string(st.st_mode) + " " + std::to_string(st.st_uid) + ":" + std::to_string(st.st_gid);
    if (S_ISREG(st.st_mode)) line += " " + read_file(path);
    if (S_ISLNK(st.st_mode)) line += " -> " + fs::read_symlink(path).string();
    entries[path.substr(dir.size())] = line;
  }
  std::string out;
  for (const auto& [path, line] : entries) out += path + " " + line + "\n";
  return out;
}

struct Notice {
  policy::ViewSpecs views;
  policy::ViewSpecs killed;
};

class ManagerTest : public ::testing::Test {
 protected:
  TempDir tmp;
  std::string storage = tmp / "storage";
  std::string state_dir = tmp / "state";
  std::string mnt = tmp / "mnt";
  std::vector<Notice> notices;
  // Fake container side: the processes running now, and every attach/detach asked of them.
  std::map<int, ProcessIdentity> processes;
  std::vector<std::pair<ProcessIdentity, std::vector<Bind>>> attached;
  std::vector<std::pair<ProcessIdentity, std::vector<std::string>>> detached;
  std::string attach_error;
  std::map<int, std::string> attach_error_for;  // by pid
  std::string detach_error;
  std::unique_ptr<Manager> mgr;

  void SetUp() override {
    fs::create_directories(mnt);
    start();
  }

  ManagerConfig config() {
    ManagerConfig c;
    c.storage_root = storage;
    c.state_dir = state_dir;
    c.mountpoint = mnt;
    // Like the real ones, attach and detach refuse a process that is not the one given.
    c.attach_ops.attach = [this](const ProcessIdentity& process, const std::vector<Bind>& binds) {
      attached.emplace_back(process, binds);
      if (auto change = identity_change(process, identify(process.pid)); !change.empty()) {
        throw std::runtime_error(change);
      }
      if (!attach_error.empty()) throw std::runtime_error(attach_error);
      if (attach_error_for.contains(process.pid)) throw std::runtime_error(attach_error_for.at(process.pid));
    };
    c.attach_ops.detach = [this](const ProcessIdentity& process, const std::vector<std::string>& targets) {
      detached.emplace_back(process, targets);
      if (auto change = identity_change(process, identify(process.pid)); !change.empty()) {
        throw std::runtime_error(change);
      }
      if (!detach_error.empty()) throw std::runtime_error(detach_error);
    };
    c.attach_ops.identify = [this](int pid) { return identify(pid); };
    return c;
  }

  std::optional<ProcessIdentity> identify(int pid) const {
    const auto it = processes.find(pid);
    if (it == processes.end()) return std::nullopt;
    return it->second;
  }

  /// Starts a fake process with `pid` (at tick `start`, in a mount namespace of its own).
  ProcessIdentity run(int pid, uint64_t start = 1000) {
    processes[pid] = ProcessIdentity{pid, start, 4, 4026532000u + static_cast<uint64_t>(pid) * 7 + start, "boot-1"};
    return processes[pid];
  }

  void start() {
    mgr.reset();
    mgr = std::make_unique<Manager>(
        config(), [this](const policy::ViewSpecs& v, const policy::ViewSpecs& k) { notices.push_back({v, k}); },
        [] { return json{{"fuse", "3.14"}, {"mounted", true}}; });
  }

  json call(const std::string& verb, json args = json::object(), bool as_json = false) {
    if (args.is_null()) args = json::object();  // `{}` at a call site is JSON null
    return mgr->handle({{"verb", verb}, {"format", as_json ? "json" : "text"}, {"args", std::move(args)}});
  }

  std::string ok(const std::string& verb, json args = json::object(), bool as_json = false) {
    const json r = call(verb, std::move(args), as_json);
    EXPECT_EQ(r.value("ok", false), true) << verb << ": " << r.dump();
    return r.value("output", "");
  }

  // A refusal: the code, the one-line message, and not a byte changed on disk.
  void refused(const std::string& verb, json args, int code, const std::string& message_part) {
    const std::string before = snapshot(tmp.path());
    const std::size_t notices_before = notices.size();
    const auto views_before = mgr->views();
    const json r = call(verb, std::move(args));
    EXPECT_EQ(r.value("ok", true), false) << r.dump();
    EXPECT_EQ(r.value("code", 0), code) << r.dump();
    const std::string error = r.value("error", "");
    EXPECT_THAT(error, HasSubstr(message_part)) << r.dump();
    EXPECT_THAT(error, Not(HasSubstr("\n")));
    EXPECT_EQ(snapshot(tmp.path()), before) << verb << " changed the disk";
    EXPECT_EQ(notices.size(), notices_before);
    EXPECT_EQ(mgr->views(), views_before);
  }

  std::string install(const std::string& manifest, json extra = json::object()) {
    extra["manifest"] = manifest;
    extra["source"] = "app.json";
    return ok("app.install", extra);
  }

  /// What `body` logs, at info and above (the tests run at warn).
  static std::string logged(const std::function<void()>& body) {
    const common::LogLevel level = common::log_level();
    common::set_log_level(common::LogLevel::info);
    ::testing::internal::CaptureStderr();
    body();
    std::string out = ::testing::internal::GetCapturedStderr();
    common::set_log_level(level);
    return out;
  }

  State saved_state() { return read_state_dir(state_dir); }  // state.json and its journal
  std::string data(const std::string& rel) { return storage + "/apps/" + rel; }
  std::string shared_view(const std::string& app, const std::string& share) {
    return mnt + "/apps/" + app + "/shared/" + share;
  }
  /// The container paths recorded for the attachment of `app` to `pid` (state.json).
  std::vector<std::string> recorded_targets(const std::string& app, int pid) {
    std::vector<std::string> targets;
    for (const auto& a : saved_state().attachments) {
      if (a.app != app || a.pid != pid) continue;
      for (const auto& b : a.binds) targets.push_back(b.target);
    }
    return targets;
  }
  void clear_ops() {
    attached.clear();
    detached.clear();
  }
};

using Attached = std::pair<ProcessIdentity, std::vector<Bind>>;
using Detached = std::pair<ProcessIdentity, std::vector<std::string>>;

TEST_F(ManagerTest, InstallProvisionsRecordsAndPrintsMounts) {
  const std::string out = install(kNavidrome);
  EXPECT_EQ(out, "-v " + mnt + "/apps/navidrome/data/data:/data\n" +
                 "-v " + mnt + "/apps/navidrome/shared/own_media:/music:ro\n");
  EXPECT_TRUE(fs::is_directory(data("navidrome/data")));
  EXPECT_EQ(read_file(data("navidrome/data/.portalfs-version")), "3.1\n");
  EXPECT_TRUE(fs::is_directory(storage + "/shared/own_media"));

  const State s = saved_state();
  ASSERT_TRUE(s.apps.contains("navidrome"));
  EXPECT_EQ(s.apps.at("navidrome")->version, "3.1");
  EXPECT_EQ(s.apps.at("navidrome")->data_dirs, (std::vector<DataDirRecord>{{"data", "3.1", false}}));

  ASSERT_EQ(notices.size(), 1u);
  const auto& views = notices[0].views;
  ASSERT_EQ(views.size(), 2u);
  EXPECT_EQ(views[0].backing, storage + "/apps/navidrome/data");
  EXPECT_EQ(views[1].backing, storage + "/shared/own_media");
  EXPECT_EQ(views[1].access, policy::Access::read);
  EXPECT_TRUE(notices[0].killed.empty());
  EXPECT_EQ(mgr->views(), views);
}

TEST_F(ManagerTest, InstallWithOwnersAndMapsSquashesTheShare) {
  const std::string manifest = R"({"name": "files", "v": "1.0",
    "data_dirs": [{"path": "/data", "uid": 1000, "gid": 1000}, "/data/documents"],
    "shared_dirs": [{"name": "own_documents", "path": "/docs", "access": "read-write", "uid": 1000, "gid": 1000}]})";
  const std::string out = install(manifest, {{"uid_maps", json::array({"0:100000:65536"})}, {"gid_maps", json::array({"0:100000:65536"})}});
  struct stat st {};
  ASSERT_EQ(::stat(data("files/data").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 1000u);  // disk ids = container ids, stored as is
  ASSERT_EQ(::stat(data("files/data/documents").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 0u);

  const auto views = mgr->views();
  ASSERT_EQ(views.size(), 3u);
  EXPECT_EQ(views[0].dir_name, "data");
  EXPECT_FALSE(views[0].ids.squash);
  EXPECT_EQ(views[1].dir_name, "data%2Fdocuments");
  EXPECT_EQ(views[2].kind, policy::GrantKind::shared);
  ASSERT_TRUE(views[2].ids.squash);
  EXPECT_EQ(*views[2].ids.squash, (policy::Squash{0, 0, 101000, 101000}));

  const json as_json = json::parse(ok("app.install",
                                      {{"manifest", manifest}, {"source", "app.json"}, {"uid_maps", json::array({"0:100000:65536"})}},
                                      true));
  ASSERT_EQ(as_json.size(), 3u);
  EXPECT_EQ(as_json[1]["host_path"], mnt + "/apps/files/data/data%2Fdocuments");
}

TEST_F(ManagerTest, InstallAgainIsNoChange) {
  const std::string first = install(kNavidrome);
  const std::string before = snapshot(tmp.path());
  EXPECT_EQ(install(kNavidrome), first);
  EXPECT_EQ(snapshot(tmp.path()), before);
  EXPECT_EQ(notices.size(), 1u);
}

TEST_F(ManagerTest, InstallRefusals) {
  install(kNavidrome);
  refused("app.install", {{"manifest", kNavidromeNext}, {"source", "app.json"}}, 2,
          "app navidrome is installed; use app upgrade");
  refused("app.install", {{"manifest", kNavidrome}, {"source", "app.json"}, {"uid_maps", json::array({"0:100000:10"})}}, 2,
          "app navidrome is installed; use app upgrade");
  refused("app.install",
          {{"manifest", R"({"name": "navi", "data_dirs": ["/data", {"path": "/music", "shared_dir": "music"}]})"},
           {"source", "navi.json"}},
          2, "share 'music' does not exist; create it with: portalctl share create music");
  EXPECT_FALSE(fs::exists(data("navi")));
  refused("app.install", {{"manifest", "{\"name\": \"x\",\n  \"data_dirs\": [}"}, {"source", "broken.json"}}, 2,
          "broken.json:2:");
  refused("app.install", {{"manifest", R"({"name": "x", "data_dirs": ["relative"]})"}, {"source", "x.json"}}, 2,
          "x.json: /data_dirs/0");
  refused("app.install", {{"source", "x.json"}}, 2, R"(app.install: argument "manifest": missing, expected a string)");
  refused("app.install", {{"manifest", kNavidrome}, {"source", 3}}, 2,
          R"(app.install: argument "source": expected a string, got 3)");
  refused("app.install", {{"manifest", kNavidrome}, {"source", "a"}, {"prune", true}}, 2,
          R"(app.install: unknown argument "prune")");
  refused("app.install", {{"manifest", kNavidrome}, {"source", "a"}, {"uid_maps", json::array({"0:1"})}}, 2,
          R"(app.install: argument "uid_maps/0": expected "inside:outside:count")");
  refused("app.install", {{"manifest", kNavidrome}, {"source", "a"}, {"uid_maps", "0:1:1"}}, 2,
          R"(argument "uid_maps": expected an array)");
  refused("app.install", {{"manifest", kNavidrome}, {"source", "a"}, {"name", "Bad Name"}}, 2, R"(argument "name")");
}

// Two names that give one id are two apps: the second is refused with one line naming both,
// escaped, and the id, and nothing changes. Before, it got the first one's mounts (and data).
TEST_F(ManagerTest, AnotherNameThatGivesAnInstalledIdIsRefused) {
  const std::string first = install(R"({"name": "a/b", "data_dirs": ["/data"]})");
  const std::string same_but_name = R"({"name": "a\nb", "data_dirs": ["/data"]})";  // a newline
  const std::string message =
      R"(app name "a\nb" is served as id a-b, which app "a/b" already has; pick another name with --name)";
  refused("app.install", {{"manifest", same_but_name}, {"source", "app.json"}}, 2, message);
  refused("app.upgrade", {{"manifest", same_but_name}, {"source", "app.json"}}, 2, message);
  // An id given with --name is a name too.
  refused("app.install", {{"manifest", same_but_name}, {"source", "app.json"}, {"name", "a-b"}}, 2,
          R"(app name "a-b" is served as id a-b, which app "a/b" already has)");
  EXPECT_EQ(saved_state().apps.at("a-b")->installed_as, "a/b");

  // The way out the message names.
  EXPECT_EQ(install(same_but_name, {{"name", "a-b-2"}}), "-v " + mnt + "/apps/a-b-2/data/data:/data\n");
  EXPECT_EQ(saved_state().apps.at("a-b-2")->installed_as, "a-b-2");
  // And the first app is still installed under its own name.
  EXPECT_EQ(install(R"({"name": "a/b", "data_dirs": ["/data"]})"), first);
}

// Ids are cut at 63 characters: names that differ only after that give one id.
TEST_F(ManagerTest, LongNamesThatShareTheirFirst63CharactersAreRefused) {
  const std::string stem(63, 'x');
  const std::string one = stem + "-1234567", two = stem + "-abcdefg";
  install(json({{"name", one}}).dump());
  ASSERT_TRUE(saved_state().apps.contains(stem));
  refused("app.install", {{"manifest", json({{"name", two}}).dump()}, {"source", "app.json"}}, 2,
          "app name \"" + two + "\" is served as id " + stem + ", which app \"" + one +
              "\" already has; pick another name with --name");
}

// A name that is not an id says what it is served as, above the mounts (not in json, whose
// output is the mounts array); installing it again is still no change.
TEST_F(ManagerTest, ANameMadeIntoAnIdSaysSoAndInstallsAgainUnchanged) {
  const std::string manifest = R"({"v": "1", "name": "Home Assistant", "data_dirs": ["/config"]})";
  const std::string out = install(manifest);
  EXPECT_EQ(out, "note: app name \"Home Assistant\" is served as id home-assistant\n"
                 "-v " + mnt + "/apps/home-assistant/data/config:/config\n");
  EXPECT_EQ(saved_state().apps.at("home-assistant")->installed_as, "Home Assistant");
  const std::string before = snapshot(tmp.path());
  EXPECT_EQ(install(manifest), out);
  EXPECT_EQ(snapshot(tmp.path()), before);
  const json as_json = json::parse(ok("app.install", {{"manifest", manifest}, {"source", "app.json"}}, true));
  ASSERT_TRUE(as_json.is_array());
  EXPECT_EQ(as_json[0]["container_path"], "/config");
  EXPECT_EQ(json::parse(ok("app.show", {{"app", "home-assistant"}}, true))["installed_as"], "Home Assistant");
  // An upgrade under the same name says so too; a name that is an id has no note.
  EXPECT_THAT(ok("app.upgrade", {{"manifest", R"({"v": "2", "name": "Home Assistant", "data_dirs": ["/config"]})"},
                                 {"source", "app.json"}}),
              ::testing::StartsWith("note: app name \"Home Assistant\" is served as id home-assistant\n-v "));
  EXPECT_THAT(install(kNavidrome), ::testing::StartsWith("-v "));
}

// A record from before names were kept takes any name that gives its id; an upgrade records it.
TEST_F(ManagerTest, ARecordWithoutItsNameTakesAnyNameUntilUpgraded) {
  const std::string manifest = R"({"v": "1", "name": "Home Assistant", "data_dirs": ["/config"]})";
  install(manifest);
  mgr.reset();
  json doc = json::parse(read_file(state_dir + "/state.json"));
  doc["apps"]["home-assistant"].erase("installed_as");
  write_file(state_dir + "/state.json", doc.dump(2));
  start();
  EXPECT_EQ(install(R"({"v": "1", "name": "home assistant", "data_dirs": ["/config"]})"),
            "note: app name \"home assistant\" is served as id home-assistant\n"
            "-v " + mnt + "/apps/home-assistant/data/config:/config\n");
  EXPECT_EQ(saved_state().apps.at("home-assistant")->installed_as, "") << "no change is no change";
  ok("app.upgrade", {{"manifest", manifest}, {"source", "app.json"}});
  EXPECT_EQ(saved_state().apps.at("home-assistant")->installed_as, "Home Assistant");
  refused("app.upgrade", {{"manifest", R"({"v": "1", "name": "home assistant", "data_dirs": ["/config"]})"},
                          {"source", "app.json"}},
          2, R"(app name "home assistant" is served as id home-assistant, which app "Home Assistant" already has)");
}

TEST_F(ManagerTest, MalformedRequests) {
  auto code_of = [&](const json& request) { return mgr->handle(request).value("code", 0); };
  EXPECT_EQ(code_of(json::array()), 2);
  EXPECT_EQ(code_of({{"verb", "app.list"}, {"format", "yaml"}}), 2);
  EXPECT_EQ(code_of({{"verb", 7}}), 2);
  EXPECT_EQ(code_of({{"verb", "app.list"}, {"args", "x"}}), 2);
  EXPECT_EQ(code_of({{"verb", "app.list"}, {"extra", 1}}), 2);
  const json r = mgr->handle({{"verb", "app.frobnicate"}});
  EXPECT_EQ(r["error"], "unknown verb \"app.frobnicate\"");
  EXPECT_EQ(mgr->handle({{"verb", "app.list"}})["ok"], true);  // format and args are optional
}

// Any control character (a newline would split the line portalctl prints).
bool has_control(const std::string& text) {
  return std::any_of(text.begin(), text.end(), [](char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; });
}

TEST_F(ManagerTest, ErrorsAreOneLineWhateverTheRequestHolds) {
  // The inputs of fuzz/regressions/request/error-newline-*.json, and their relatives.
  const std::vector<std::pair<json, std::string>> cases = {
      {{{"verb", "\n"}}, R"(unknown verb "\n")"},
      {{{"verb", "app.\tlist\x01"}}, R"(unknown verb "app.\tlist\u0001")"},
      {{{"verb", "status"}, {"\n", 1}}, R"(bad request: unknown field "\n")"},
      {{{"verb", "status"}, {"format", "\r\n"}}, R"(bad request: field "format": expected "text" or "json", got "\r\n")"},
      {{{"verb", "app.show"}, {"args", {{"\n", 1}}}}, R"(app.show: unknown argument "\n")"},
      {{{"verb", "app.show"}, {"args", {{"app", "x\ny"}}}}, R"(app.show: argument "app": expected an app id)"},
      {{{"verb", "app.install"}, {"args", {{"manifest", "{"}, {"source", "a\nb.json"}}}}, R"(a\nb.json:1:2: )"},
  };
  for (const auto& [request, part] : cases) {
    const json r = mgr->handle(request);
    EXPECT_EQ(r.value("code", 0), 2) << r.dump();
    const std::string error = r.value("error", "");
    EXPECT_THAT(error, HasSubstr(part)) << r.dump();
    EXPECT_FALSE(has_control(error)) << r.dump();
  }
  EXPECT_FALSE(fs::exists(storage + "/apps"));
}

TEST(RequestError, EscapesControlCharacters) {
  const RequestError e(2, "a\nb\tc\rd\x01" "e\x7f f\xc3\xa9");
  EXPECT_STREQ(e.what(), R"(a\nb\tc\rd\x01e\x7f f)" "\xc3\xa9");
  EXPECT_EQ(e.code(), 2);
}

// What any exception's text becomes on the wire: one line too.
TEST(ErrorResponse, EscapesControlCharacters) {
  EXPECT_EQ(error_response(1, "cannot create /srv/a\nb: denied")["error"], R"(cannot create /srv/a\nb: denied)");
}

TEST_F(ManagerTest, UpgradeKeepsDataRecordsVersionsAndKeepsRemovedDirs) {
  install(R"({"v": "1", "name": "navidrome", "data_dirs": ["/data", "/old"]})");
  write_file(data("navidrome/data/library.db"), "v1 data");
  const std::string out = ok("app.upgrade", {{"manifest", kNavidromeNext}, {"source", "app.json"}});
  EXPECT_THAT(out, HasSubstr(":/cache\n"));
  EXPECT_EQ(read_file(data("navidrome/data/library.db")), "v1 data");
  EXPECT_EQ(read_file(data("navidrome/data/.portalfs-version")), "1\n");
  EXPECT_EQ(read_file(data("navidrome/cache/.portalfs-version")), "3.2\n");
  EXPECT_TRUE(fs::is_directory(data("navidrome/old")));

  const AppRecord rec = saved_state().apps.at("navidrome");
  EXPECT_EQ(rec.version, "3.2");
  EXPECT_EQ(rec.data_dirs, (std::vector<DataDirRecord>{{"cache", "3.2", false}, {"data", "1", false}, {"old", "1", true}}));
  const std::string show = ok("app.show", {{"app", "navidrome"}});
  EXPECT_THAT(show, HasSubstr("version: 3.2\n"));
  EXPECT_THAT(show, HasSubstr("data_dir: data (created by 1)\n"));
  EXPECT_THAT(show, HasSubstr("data_dir: old (created by 1; no longer in the manifest, kept on disk)\n"));
  EXPECT_THAT(show, HasSubstr("grant: share own_media at /music (read)\n"));
  const json shown = json::parse(ok("app.show", {{"app", "navidrome"}}, true));
  EXPECT_EQ(shown["data_dirs"][1], (json{{"name", "data"}, {"created_by_version", "1"}, {"removed", false}}));

  // The same upgrade again is no change.
  const std::string before = snapshot(tmp.path());
  const std::size_t n = notices.size();
  ok("app.upgrade", {{"manifest", kNavidromeNext}, {"source", "app.json"}});
  EXPECT_EQ(snapshot(tmp.path()), before);
  EXPECT_EQ(notices.size(), n);
}

TEST_F(ManagerTest, UpgradePruneDeletesRemovedDirsWithoutFollowingSymlinks) {
  fs::create_directories(tmp / "outside");
  write_file(tmp / "outside/precious", "keep");
  install(R"({"v": "1", "name": "navidrome", "data_dirs": ["/data", "/old"]})");
  fs::create_directory_symlink(tmp / "outside", data("navidrome/old/escape"));
  ok("app.upgrade", {{"manifest", R"({"v": "2", "name": "navidrome", "data_dirs": ["/data"]})"}, {"source", "a"}});
  EXPECT_TRUE(fs::exists(data("navidrome/old")));
  ok("app.upgrade",
     {{"manifest", R"({"v": "2", "name": "navidrome", "data_dirs": ["/data"]})"}, {"source", "a"}, {"prune", true}});
  EXPECT_FALSE(fs::exists(data("navidrome/old")));
  EXPECT_TRUE(fs::exists(data("navidrome/data")));
  EXPECT_EQ(read_file(tmp / "outside/precious"), "keep");
  EXPECT_EQ(saved_state().apps.at("navidrome")->data_dirs, (std::vector<DataDirRecord>{{"data", "1", false}}));
}

TEST_F(ManagerTest, UpgradePruneKeepsADirHoldingALiveOne) {
  install(R"({"v": "1", "name": "a", "data_dirs": ["/data", "/data/keep"]})");
  ok("app.upgrade",
     {{"manifest", R"({"v": "2", "name": "a", "data_dirs": ["/data/keep"]})"}, {"source", "a"}, {"prune", true}});
  EXPECT_TRUE(fs::is_directory(data("a/data/keep")));
  EXPECT_EQ(saved_state().apps.at("a")->data_dirs,
            (std::vector<DataDirRecord>{{"data/keep", "1", false}, {"data", "1", true}}));
}

TEST_F(ManagerTest, UpgradeRefusals) {
  refused("app.upgrade", {{"manifest", kNavidrome}, {"source", "a"}}, 2, "app navidrome is not installed; use app install");
  install(kNavidrome);
  refused("app.upgrade", {{"manifest", kNavidromeNext}, {"source", "a"}, {"prune", "yes"}}, 2,
          R"(app.upgrade: argument "prune": expected true or false, got "yes")");
  refused("app.upgrade",
          {{"manifest", R"({"v": "4", "name": "navidrome", "data_dirs": [{"path": "/m", "shared_dir": "music"}]})"},
           {"source", "a"}},
          2, "share 'music' does not exist");
}

TEST_F(ManagerTest, RemoveKeepsDataAndReinstallGetsItBack) {
  install(R"({"v": "1", "name": "navidrome", "data_dirs": ["/data"]})");
  write_file(data("navidrome/data/library.db"), "precious");
  const std::string out = ok("app.remove", {{"app", "navidrome"}});
  EXPECT_THAT(out, HasSubstr("its data stays in " + storage + "/apps/navidrome"));
  EXPECT_FALSE(saved_state().apps.contains("navidrome"));
  EXPECT_TRUE(notices.back().views.empty());
  EXPECT_TRUE(mgr->views().empty());
  EXPECT_EQ(read_file(data("navidrome/data/library.db")), "precious");

  install(R"({"v": "2", "name": "navidrome", "data_dirs": ["/data"]})");
  EXPECT_EQ(read_file(data("navidrome/data/library.db")), "precious");
  // The data keeps the version that made it, read back from its marker.
  EXPECT_EQ(saved_state().apps.at("navidrome")->data_dirs, (std::vector<DataDirRecord>{{"data", "1", false}}));
}

TEST_F(ManagerTest, RemovePurge) {
  install(kNavidrome);
  write_file(data("navidrome/data/x"), "x");
  EXPECT_EQ(json::parse(ok("app.remove", {{"app", "navidrome"}, {"purge", true}}, true)),
            (json{{"app", "navidrome"}, {"purged", true}}));
  EXPECT_FALSE(fs::exists(data("navidrome")));
  EXPECT_TRUE(fs::exists(storage + "/shared/own_media"));  // shares are not the app's
  EXPECT_TRUE(mgr->wait_idle(std::chrono::seconds(30)));
  refused("app.remove", {{"app", "navidrome"}}, 2, "app navidrome is not installed");
  refused("app.remove", {{"app", "navidrome"}, {"purge", true}}, 2, "app navidrome is not installed");
  refused("app.remove", {{"app", "../etc"}}, 2, R"(app.remove: argument "app": expected an app id)");

  // What a remove without --purge left can be purged later.
  install(kNavidrome);
  ok("app.remove", {{"app", "navidrome"}});
  EXPECT_THAT(ok("app.remove", {{"app", "navidrome"}, {"purge", true}}), HasSubstr("deleted the data of app navidrome"));
  EXPECT_FALSE(fs::exists(data("navidrome")));
}

// Issue #18: a purge is recorded in the state before it starts; the tree leaves its place at
// once and is deleted by the worker, off the request path.
TEST_F(ManagerTest, PurgeMovesTheTreeToTheTrashAndTheWorkerEmptiesIt) {
  install(kNavidrome);
  for (int i = 0; i < 50; ++i) fs::create_directories(data("navidrome/data/" + std::to_string(i) + "/a/b/c"));
  ok("app.remove", {{"app", "navidrome"}, {"purge", true}});
  EXPECT_FALSE(fs::exists(data("navidrome")));
  EXPECT_TRUE(mgr->wait_idle(std::chrono::seconds(30)));
  EXPECT_TRUE(fs::is_empty(storage + "/trash"));
  // Nothing is left recorded once done.
  EXPECT_FALSE(to_json(saved_state()).contains("removals"));
}

TEST_F(ManagerTest, ARemovalRecordedBeforeACrashIsCarriedOutAtStart) {
  install(kNavidrome);
  write_file(data("navidrome/data/x"), "x");
  mgr.reset();
  // What a crash between saving the state and moving the tree leaves.
  json doc = json::parse(read_file(state_dir + "/state.json"));
  doc["apps"].erase("navidrome");
  doc["removals"] = {"apps/navidrome"};
  write_file(state_dir + "/state.json", doc.dump());
  start();
  EXPECT_FALSE(fs::exists(data("navidrome")));
  mgr->start();
  EXPECT_TRUE(mgr->wait_idle(std::chrono::seconds(30)));
  EXPECT_TRUE(fs::is_empty(storage + "/trash"));
  EXPECT_FALSE(to_json(saved_state()).contains("removals"));
}

TEST_F(ManagerTest, ARemovalRecordOutsideTheAppsIsRefusedWithOneLine) {
  mgr.reset();
  for (const std::string bad : {"shared/own_media", "apps/../shared", "apps", "/etc"}) {
    json doc = to_json(fresh_state());
    doc["removals"] = {bad};
    write_file(state_dir + "/state.json", doc.dump());
    try {
      start();
      ADD_FAILURE() << bad << " accepted";
    } catch (const StateError& e) {
      EXPECT_THAT(e.what(), HasSubstr("/removals/0"));
      EXPECT_THAT(e.what(), HasSubstr(R"(expected "apps/<app>[/<data dir>]")"));
    }
  }
}

TEST_F(ManagerTest, AppList) {
  EXPECT_EQ(ok("app.list"), "");
  install(kNavidrome);
  install(R"({"name": "zeta", "data_dirs": ["/z"]})");
  EXPECT_EQ(ok("app.list"), "navidrome 3.1\nzeta -\n");
  EXPECT_EQ(json::parse(ok("app.list", {}, true)),
            json::parse(R"([{"name": "navidrome", "version": "3.1"}, {"name": "zeta", "version": ""}])"));
  refused("app.show", {{"app", "nope"}}, 2, "app nope is not installed");
  refused("app.list", {{"app", "x"}}, 2, R"(app.list: unknown argument "app")");
}

TEST_F(ManagerTest, ShareCreateAndList) {
  EXPECT_EQ(ok("share.create", {{"name", "music"}, {"owner", "1000:1001"}}),
            "created share music at " + storage + "/shared/music (owner 1000:1001)\n");
  struct stat st {};
  ASSERT_EQ(::stat((storage + "/shared/music").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 1000u);
  EXPECT_EQ(st.st_gid, 1001u);
  EXPECT_EQ(saved_state().shares.at("music"), (policy::Owner{1000, 1001}));
  EXPECT_EQ(notices.size(), 0u);  // no view changed

  refused("share.create", {{"name", "music"}}, 2, "share 'music' exists");
  refused("share.create", {{"name", "Music!"}}, 2, R"(share.create: argument "name": expected a share name)");
  refused("share.create", {{"name", "x"}, {"owner", "root"}}, 2, R"(share.create: argument "owner": expected UID:GID)");
  refused("share.create", {{"name", "x"}, {"owner", "1:99999999999"}}, 2, R"(argument "owner")");

  EXPECT_EQ(ok("share.list"), "music 1000:1001\nown_documents 0:0\nown_media 0:0\n");
  install(kNavidrome);
  const json list = json::parse(ok("share.list", {}, true));
  ASSERT_EQ(list.size(), 3u);
  EXPECT_EQ(list[2], (json{{"name", "own_media"}, {"owner", "0:0"}, {"path", storage + "/shared/own_media"},
                           {"apps", json::array({"navidrome"})}}));
}

// A share's trash (policy/trash.hpp): the setting reaches state.json and the views; the slots
// the filesystem fills (tests/integration/trash_test.cpp) are listed, restored and purged.
TEST_F(ManagerTest, ShareTrashSettingReachesTheStateAndTheViews) {
  EXPECT_EQ(ok("share.create", {{"name", "docs"}, {"trash", "30d"}}),
            "created share docs at " + storage + "/shared/docs (owner 0:0, trash 30d)\n");
  struct stat st {};
  ASSERT_EQ(::stat((storage + "/share-trash/docs").c_str(), &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0700u);
  EXPECT_EQ(st.st_uid, 0u);
  EXPECT_EQ(saved_state().share_trash.at("docs"), 30 * 86400);
  EXPECT_THAT(ok("share.list"), HasSubstr("docs 0:0 trash 30d\n"));
  EXPECT_EQ(json::parse(ok("share.list", {}, true))[0]["trash"], "30d");

  install(kNavidrome);
  ok("grant", {{"app", "navidrome"}, {"share", "docs"}, {"access", "read-write"}, {"path", "/docs"}});
  auto docs_trash = [&] {
    for (const auto& v : mgr->views()) {
      if (v.kind == policy::GrantKind::shared && v.dir_name == "docs") return v.trash;
    }
    return std::string("no view");
  };
  EXPECT_EQ(docs_trash(), storage + "/share-trash/docs");

  EXPECT_EQ(ok("share.set", {{"name", "docs"}, {"trash", "12h"}}), "share docs: deletes go to its trash, kept 12h\n");
  EXPECT_EQ(saved_state().share_trash.at("docs"), 12 * 3600);
  const std::size_t before = notices.size();
  EXPECT_EQ(ok("share.set", {{"name", "docs"}, {"trash", "off"}}),
            "share docs: deletes delete; what is in its trash stays until portalctl trash purge docs\n");
  EXPECT_EQ(docs_trash(), "");
  EXPECT_EQ(notices.size(), before + 1);  // the views were told
  EXPECT_TRUE(saved_state().share_trash.empty());
  EXPECT_FALSE(to_json(saved_state())["shares"]["docs"].contains("trash"));

  refused("share.set", {{"name", "docs"}, {"trash", "forever"}}, 2,
          R"(share.set: argument "trash": expected a retention like 30d, 12h, 45m or 90s (at most 3650d), or off, got "forever")");
  refused("share.set", {{"name", "docs"}}, 2, R"(argument "trash": missing)");
  refused("share.set", {{"name", "nope"}, {"trash", "1d"}}, 2, "share 'nope' does not exist");
  refused("share.create", {{"name", "x"}, {"trash", "1w"}}, 2, R"(share.create: argument "trash": expected a retention)");
}

TEST_F(ManagerTest, TrashEntriesAreListedRestoredAndPurged) {
  ok("share.create", {{"name", "docs"}, {"trash", "30d"}});
  const int64_t now = ::time(nullptr);
  // Slots as the filesystem makes them (fuse/trash.cpp).
  auto slot = [&](const std::string& id, const policy::TrashRecord& record, const std::string& bytes) {
    const std::string dir = storage + "/share-trash/docs/" + id;
    fs::create_directories(dir);
    write_file(dir + "/record.json", policy::trash_record_json(record));
    write_file(dir + "/entry", bytes);
  };
  const std::string first = "20261206-100000-0000000a", second = "20261206-110000-0000000b";
  slot(first, {"a.txt", "alpha", "docs", now - 200, "file"}, "A");
  slot(second, {"sub/b.txt", "beta", "docs", now - 100, "file"}, "B");
  fs::create_directories(storage + "/share-trash/docs/not-a-slot");  // ignored

  const std::string list = ok("trash.list");
  EXPECT_THAT(list, testing::MatchesRegex(first + " docs [-0-9T:]+Z alpha file a.txt\n" + second +
                                          " docs [-0-9T:]+Z beta file sub/b.txt\n"));
  EXPECT_THAT(ok("trash.list", {{"app", "beta"}}), testing::StartsWith(second + " docs "));
  EXPECT_EQ(ok("trash.list", {{"share", "docs"}, {"app", "gamma"}}), "");
  const json listed = json::parse(ok("trash.list", {{"share", "docs"}}, true));
  ASSERT_EQ(listed.size(), 2u);
  EXPECT_EQ(listed[1]["path"], "sub/b.txt");
  EXPECT_EQ(listed[1]["app"], "beta");
  EXPECT_EQ(listed[1]["view"], "docs");

  refused("trash.restore", {{"id", "../x"}}, 2, R"(trash.restore: argument "id": expected an id like)");
  refused("trash.restore", {{"id", "20261206-120000-0000000f"}}, 2, "no entry 20261206-120000-0000000f in any share's trash");
  refused("trash.restore", {{"id", second}}, 2,
          "share docs: sub/b.txt: its directory " + storage + "/shared/docs/sub does not exist; restore that directory first");
  write_file(storage + "/shared/docs/a.txt", "new");
  refused("trash.restore", {{"id", first}}, 2,
          "share docs: a.txt exists; move it away first, or restore to another path with --to PATH");
  refused("trash.restore", {{"id", first}, {"to", "../a.txt"}}, 2, "expected a path relative to the share");
  refused("trash.list", {{"share", "nope"}}, 2, "share 'nope' does not exist");

  EXPECT_EQ(ok("trash.restore", {{"id", first}, {"to", "a.old.txt"}}), "restored " + first + " to share docs: a.old.txt\n");
  EXPECT_EQ(read_file(storage + "/shared/docs/a.old.txt"), "A");
  EXPECT_EQ(read_file(storage + "/shared/docs/a.txt"), "new");
  EXPECT_FALSE(fs::exists(storage + "/share-trash/docs/" + first));

  EXPECT_EQ(ok("trash.purge", {{"older_than", 3600}}), "purged 0 entries\n");
  EXPECT_EQ(ok("trash.purge", {{"share", "docs"}, {"app", "beta"}}), "purged 1 entry\n");
  EXPECT_FALSE(fs::exists(storage + "/share-trash/docs/" + second));
  EXPECT_TRUE(mgr->wait_idle(std::chrono::seconds(30)));
  EXPECT_TRUE(fs::is_empty(storage + "/trash"));
  EXPECT_EQ(ok("trash.list"), "");
}

// A verb copies only the record it changes (State::apps holds AppRefs): in the state it makes,
// every other app's record is the very object the state before holds, and the state before is
// left as it was. Copying and comparing every record made each change cost in proportion to the
// apps installed.
TEST_F(ManagerTest, AVerbCopiesOnlyTheRecordItChanges) {
  install(R"({"v": "1", "name": "photos", "data_dirs": ["/data"]})");
  install(kNavidrome);
  mgr.reset();
  Manager::Impl impl(config(), {}, {});
  const State before = impl.state;  // shares every record with impl.state
  const auto next_of = [&](const json& args, const std::string& verb) {
    Outcome out = impl.dispatch(parse_request({{"verb", verb}, {"args", args}}));
    EXPECT_TRUE(out.next) << verb;
    return out.next ? *out.next : State{};
  };
  const auto same = [](const State& a, const State& b, const std::string& app) {
    return a.apps.at(app).same_object(b.apps.at(app));
  };

  const State granted = next_of({{"app", "photos"}, {"share", "own_media"}, {"access", "read"}, {"path", "/m"}}, "grant");
  EXPECT_TRUE(same(granted, before, "navidrome"));
  EXPECT_FALSE(same(granted, before, "photos"));
  EXPECT_EQ(granted.apps.at("photos")->admin_grants.size(), 1u);
  EXPECT_TRUE(impl.state.apps.at("photos")->admin_grants.empty()) << "the state before was changed";
  EXPECT_TRUE(same(impl.state, before, "photos"));
  EXPECT_NE(granted, before);  // compared by value where the records are not the same object

  const State revoked = next_of({{"app", "navidrome"}, {"share", "own_media"}}, "revoke");
  EXPECT_TRUE(same(revoked, before, "photos"));
  EXPECT_EQ(revoked.apps.at("navidrome")->revoked, std::vector<std::string>{"own_media"});
  EXPECT_TRUE(impl.state.apps.at("navidrome")->revoked.empty());

  const State installed = next_of({{"manifest", R"({"v": "1", "name": "notes", "data_dirs": ["/data"]})"}, {"source", "app.json"}},
                                  "app.install");
  EXPECT_TRUE(same(installed, before, "photos"));
  EXPECT_TRUE(same(installed, before, "navidrome"));
  EXPECT_FALSE(impl.state.apps.contains("notes"));

  const State removed = next_of({{"app", "photos"}}, "app.remove");
  EXPECT_TRUE(same(removed, before, "navidrome"));
  EXPECT_FALSE(removed.apps.contains("photos"));
  EXPECT_EQ(impl.state, before);
}

TEST_F(ManagerTest, GrantAndRevokeNotifyTheViews) {
  install(R"({"v": "1", "name": "photos", "data_dirs": ["/data"]})");
  ASSERT_EQ(notices.size(), 1u);

  EXPECT_EQ(ok("grant", {{"app", "photos"}, {"share", "own_media"}, {"access", "read-write"}, {"path", "/media/"}}),
            "granted share own_media to app photos at /media (read-write)\n");
  ASSERT_EQ(notices.size(), 2u);
  ASSERT_EQ(notices[1].views.size(), 2u);
  EXPECT_EQ(notices[1].views[1].backing, storage + "/shared/own_media");
  EXPECT_EQ(notices[1].views[1].access, policy::Access::read_write);
  EXPECT_THAT(ok("mounts", {{"app", "photos"}, {"style", "docker"}}), HasSubstr("shared/own_media:/media\n"));

  // Granting again with less access replaces the grant: one view, read-only.
  ok("grant", {{"app", "photos"}, {"share", "own_media"}, {"access", "read"}, {"path", "/media"}});
  ASSERT_EQ(notices.size(), 3u);
  ASSERT_EQ(notices[2].views.size(), 2u);
  EXPECT_EQ(notices[2].views[1].access, policy::Access::read);
  EXPECT_TRUE(notices[2].killed.empty());
  // The same grant again is no change.
  ok("grant", {{"app", "photos"}, {"share", "own_media"}, {"access", "read"}, {"path", "/media"}});
  EXPECT_EQ(notices.size(), 3u);

  const auto served = notices[2].views[1];
  ok("revoke", {{"app", "photos"}, {"share", "own_media"}});
  ASSERT_EQ(notices.size(), 4u);
  EXPECT_EQ(notices[3].views.size(), 1u);
  EXPECT_TRUE(notices[3].killed.empty());

  ok("grant", {{"app", "photos"}, {"share", "own_media"}, {"access", "rw"}, {"path", "/media"}});
  EXPECT_THAT(ok("revoke", {{"app", "photos"}, {"share", "own_media"}, {"force", true}}), HasSubstr("writes to its open files fail now"));
  ASSERT_EQ(notices.size(), 6u);
  EXPECT_EQ(notices[5].views.size(), 1u);
  ASSERT_EQ(notices[5].killed.size(), 1u);
  EXPECT_EQ(notices[5].killed[0].backing, served.backing);
  EXPECT_EQ(notices[5].killed[0].access, policy::Access::read_write);
  EXPECT_EQ(notices[5].killed[0].dir_name, "own_media");
}

TEST_F(ManagerTest, ChangesDeliverOnlyTheViewsOfTheAppsTheyTouch) {
  // With ViewsUpdated, each change hands over the apps it touched and all their views now;
  // applied one after another, the deltas give the views a manager started afresh serves.
  std::vector<ViewsDelta> deltas;
  std::map<std::string, policy::ViewSpecs> served;
  mgr.reset();
  ManagerConfig c = config();
  c.on_views_updated = [&](const ViewsDelta& d) {
    deltas.push_back(d);
    if (d.all) served.clear();
    for (const auto& app : d.apps) served.erase(app);
    for (const auto& v : d.views) {
      EXPECT_TRUE(d.apps.contains(v.app)) << v.app;
      served[v.app].push_back(v);
    }
  };
  mgr = std::make_unique<Manager>(c, [](const policy::ViewSpecs&, const policy::ViewSpecs&) {
    ADD_FAILURE() << "ViewsChanged called with ViewsUpdated set";
  });
  const auto flat = [&] {
    policy::ViewSpecs out;
    for (const auto& [app, specs] : served) out.insert(out.end(), specs.begin(), specs.end());
    return out;
  };
  const auto last_apps = [&] { return deltas.empty() ? std::set<std::string>{} : deltas.back().apps; };
  ok("share.create", {{"name", "docs"}});
  EXPECT_TRUE(deltas.empty());  // no view changed
  install(R"({"v": "1", "name": "photos", "data_dirs": ["/data"]})");
  install(R"({"v": "1", "name": "notes", "data_dirs": ["/data", {"path": "/docs", "shared_dir": "docs", "access": "read"}]})");
  install(R"({"v": "1", "name": "music", "data_dirs": ["/data", {"path": "/docs", "shared_dir": "docs", "access": "read-write"}]})");
  EXPECT_EQ(last_apps(), std::set<std::string>{"music"});
  EXPECT_EQ(flat(), mgr->views());

  ok("grant", {{"app", "photos"}, {"share", "docs"}, {"access", "read"}, {"path", "/docs"}});
  EXPECT_EQ(last_apps(), std::set<std::string>{"photos"});
  EXPECT_EQ(deltas.back().views.size(), 2u);  // photos' data view and the share
  EXPECT_EQ(flat(), mgr->views());

  // A share's trash reaches every app granted it, and only those.
  const std::size_t before_trash = deltas.size();
  ok("share.set", {{"name", "docs"}, {"trash", "30d"}});
  ASSERT_EQ(deltas.size(), before_trash + 1);
  EXPECT_EQ(last_apps(), (std::set<std::string>{"music", "notes", "photos"}));
  EXPECT_EQ(flat(), mgr->views());

  ok("revoke", {{"app", "notes"}, {"share", "docs"}, {"force", true}});
  EXPECT_EQ(last_apps(), std::set<std::string>{"notes"});
  ASSERT_EQ(deltas.back().killed.size(), 1u);
  EXPECT_EQ(deltas.back().killed[0].app, "notes");
  EXPECT_EQ(flat(), mgr->views());

  ok("app.remove", {{"app", "music"}});
  EXPECT_EQ(last_apps(), std::set<std::string>{"music"});
  EXPECT_FALSE(served.contains("music"));
  EXPECT_EQ(flat(), mgr->views());

  // A quota is in every view it limits: every app is rebuilt, and only the changed delivered.
  ok("quota.set", {{"target", "photos:docs"}, {"bytes", 1 << 20}});  // photos' files in docs
  EXPECT_EQ(last_apps(), std::set<std::string>{"photos"});  // the only view of docs left
  EXPECT_EQ(flat(), mgr->views());

  const auto now = mgr->views();
  mgr.reset();
  start();  // views built from the state alone
  EXPECT_EQ(mgr->views(), now);
}

TEST_F(ManagerTest, RevokeOfAManifestShareSurvivesUpgrade) {
  install(kNavidrome);
  ok("revoke", {{"app", "navidrome"}, {"share", "own_media"}});
  EXPECT_EQ(mgr->views().size(), 1u);
  ok("app.upgrade", {{"manifest", kNavidromeNext}, {"source", "a"}});
  EXPECT_EQ(mgr->views().size(), 2u);  // data + cache; the admin's revoke stands
  ok("grant", {{"app", "navidrome"}, {"share", "own_media"}, {"access", "read"}, {"path", "/music"}});
  EXPECT_EQ(mgr->views().size(), 3u);
  EXPECT_TRUE(saved_state().apps.at("navidrome")->admin_grants.empty());  // back to what the manifest says
}

TEST_F(ManagerTest, GrantModesAndSidecarsReachTheViewsTheMountsAndTheState) {
  install(R"({"v": "1", "name": "photos", "data_dirs": ["/data"]})");
  ok("grant", {{"app", "photos"}, {"share", "own_media"}, {"access", "no-delete"}, {"path", "/media"}});
  EXPECT_EQ(notices.back().views[1].access, policy::Access::no_delete);
  EXPECT_THAT(ok("mounts", {{"app", "photos"}, {"style", "docker"}}), HasSubstr("shared/own_media:/media\n"));  // rw

  ok("grant", {{"app", "photos"}, {"share", "own_media"}, {"access", "read"}, {"path", "/media"},
               {"sidecars", {"*.xmp"}}});
  EXPECT_EQ(notices.back().views[1].access, policy::Access::read);
  EXPECT_EQ(notices.back().views[1].sidecars, (std::vector<std::string>{"*.xmp"}));
  // A read grant with sidecars writes: the container's mount is read-write.
  EXPECT_THAT(ok("mounts", {{"app", "photos"}, {"style", "docker"}}), HasSubstr("shared/own_media:/media\n"));
  const auto saved = saved_state().apps.at("photos")->admin_grants;
  ASSERT_EQ(saved.size(), 1u);
  EXPECT_EQ(saved[0].sidecars, (std::vector<std::string>{"*.xmp"}));
  EXPECT_THAT(ok("app.show", {{"app", "photos"}}), HasSubstr("(read, sidecars *.xmp)"));

  refused("grant", {{"app", "photos"}, {"share", "own_media"}, {"access", "read-write"}, {"path", "/media"},
                    {"sidecars", {"*.xmp"}}}, 2,
          R"(grant: argument "sidecars": expected none with read-write: sidecars widen a read grant)");
  refused("grant", {{"app", "photos"}, {"share", "own_media"}, {"access", "read"}, {"path", "/media"},
                    {"sidecars", {"../x"}}}, 2,
          R"(grant: argument "sidecars": expected a file name pattern)");
}

TEST_F(ManagerTest, GrantRefusals) {
  install(kNavidrome);
  refused("grant", {{"app", "navidrome"}, {"share", "music"}, {"access", "read"}, {"path", "/m"}}, 2,
          "share 'music' does not exist; create it with: portalctl share create music");
  refused("grant", {{"app", "ghost"}, {"share", "own_media"}, {"access", "read"}, {"path", "/m"}}, 2,
          "app ghost is not installed");
  refused("grant", {{"app", "navidrome"}, {"share", "own_documents"}, {"access", "write"}, {"path", "/m"}}, 2,
          R"(grant: argument "access": expected one of read, read-write, create-only, no-delete, own-files, got "write")");
  refused("grant", {{"app", "navidrome"}, {"share", "own_documents"}, {"access", "read"}, {"path", "relative"}}, 2,
          R"(grant: argument "path": expected an absolute path)");
  refused("grant", {{"app", "navidrome"}, {"share", "own_documents"}, {"access", "read"}, {"path", "/proc/x"}}, 2,
          R"(grant: argument "path")");
  refused("grant", {{"app", "navidrome"}, {"share", "own_documents"}, {"access", "read"}, {"path", "/data"}}, 2,
          "app navidrome: /data would be mounted twice (data dir data and share own_documents)");
  refused("grant", {{"app", "navidrome"}, {"share", "own_documents"}, {"access", "read"}}, 2,
          R"(grant: argument "path": missing, expected a string)");
  refused("revoke", {{"app", "navidrome"}, {"share", "own_documents"}}, 2, "app navidrome has no grant of share own_documents");
  refused("revoke", {{"app", "navidrome"}, {"share", "own_media"}, {"force", 1}}, 2, R"(argument "force")");
}

TEST_F(ManagerTest, Mounts) {
  install(kNavidrome);
  EXPECT_EQ(ok("mounts", {{"app", "navidrome"}, {"style", "docker"}}),
            "-v " + mnt + "/apps/navidrome/data/data:/data\n-v " + mnt + "/apps/navidrome/shared/own_media:/music:ro\n");
  const json oci = json::parse(ok("mounts", {{"app", "navidrome"}, {"style", "oci"}}));
  EXPECT_EQ(oci[1]["options"], (json{"rbind", "nosuid", "nodev", "ro"}));
  const json js = json::parse(ok("mounts", {{"app", "navidrome"}, {"style", "json"}}));
  EXPECT_EQ(js[0]["kind"], "data");
  refused("mounts", {{"app", "navidrome"}, {"style", "podman"}}, 2,
          R"(mounts: argument "style": expected "docker", "oci" or "json", got "podman")");
  refused("mounts", {{"app", "ghost"}, {"style", "oci"}}, 2, "app ghost is not installed");
}

// A path docker -v can't express is still a valid app (FUSE and OCI take it): install and
// upgrade succeed and say where the mounts are; only `mounts` in the docker style refuses.
TEST_F(ManagerTest, InstallAndUpgradeOfAPathDockerCantExpress) {
  const std::string v1 = R"({"name": "colon", "v": "1", "data_dirs": ["/a:b"]})";
  const std::string note = "app colon: a mount path holds ':' or whitespace, which docker -v can't express; "
                           "portalctl mounts colon --format oci gives the mounts\n";
  EXPECT_EQ(install(v1), note);
  EXPECT_TRUE(fs::is_directory(data("colon/a:b")));
  EXPECT_TRUE(saved_state().apps.contains("colon"));
  EXPECT_EQ(install(v1), note);  // again: no change
  const json as_json = json::parse(ok("app.install", {{"manifest", v1}, {"source", "app.json"}}, true));
  EXPECT_EQ(as_json[0]["container_path"], "/a:b");

  refused("mounts", {{"app", "colon"}, {"style", "docker"}}, 2,
          "app colon: the path \"" + mnt + "/apps/colon/data/a:b\" holds ':' or whitespace");
  const json oci = json::parse(ok("mounts", {{"app", "colon"}, {"style", "oci"}}));
  EXPECT_EQ(oci[0]["destination"], "/a:b");

  EXPECT_EQ(ok("app.upgrade", {{"manifest", R"({"name": "colon", "v": "2", "data_dirs": ["/a:b", "/c d"]})"},
                               {"source", "app.json"}}),
            note);
  EXPECT_TRUE(fs::is_directory(data("colon/c d")));
  EXPECT_EQ(saved_state().apps.at("colon")->version, "2");
}

TEST_F(ManagerTest, StorageMountListReportUnmount) {
  install(R"({"v": "1", "name": "web", "data_dirs": ["/data"]})");
  fs::create_directories(tmp / "assets");
  const std::string assets = tmp / "assets";
  EXPECT_EQ(ok("storage.mount", {{"app", "web"}, {"spec", assets + "/:/www/assets:ro"}}), "");
  const auto views = mgr->views();
  ASSERT_EQ(views.size(), 2u);
  EXPECT_EQ(views[1].kind, policy::GrantKind::host);
  EXPECT_EQ(views[1].backing, assets);
  EXPECT_EQ(views[1].access, policy::Access::read);

  const std::string view = mnt + "/apps/web/data/data";
  EXPECT_EQ(ok("storage.list", {{"app", "web"}}), view + ":/data\n" + assets + ":/www/assets:ro\n");
  EXPECT_EQ(json::parse(ok("storage.list", {{"app", "web"}}, true))[1],
            (json{{"host_path", assets}, {"container_path", "/www/assets"}, {"volume_options", "ro"}}));
  EXPECT_THAT(ok("storage.report", {{"app", "web"}}),
              HasSubstr("=====> web storage information\n       Storage build mounts:\n"
                        "       Storage deploy mounts:         -v " + view + ":/data -v " + assets + ":/www/assets:ro\n"));
  EXPECT_EQ(ok("storage.report", {{"only", "run"}}), "-v " + view + ":/data -v " + assets + ":/www/assets:ro\n");
  EXPECT_THAT(ok("mounts", {{"app", "web"}, {"style", "docker"}}), HasSubstr("/apps/web/host/"));

  // Mounting again upserts (rw now), it does not add a second mount.
  ok("storage.mount", {{"app", "web"}, {"spec", assets + ":/www/assets"}});
  EXPECT_EQ(ok("storage.list", {{"app", "web"}}), view + ":/data\n" + assets + ":/www/assets\n");

  refused("storage.unmount", {{"app", "web"}, {"spec", assets + ":/elsewhere"}}, 2,
          "app web has no storage mount " + assets + ":/elsewhere");
  ok("storage.unmount", {{"app", "web"}, {"spec", assets + ":/www/assets"}});
  EXPECT_EQ(ok("storage.list", {{"app", "web"}}), view + ":/data\n");
  EXPECT_EQ(mgr->views().size(), 1u);
}

TEST_F(ManagerTest, StorageMountRefusals) {
  install(R"({"v": "1", "name": "web", "data_dirs": ["/data"]})");
  fs::create_directories(tmp / "assets");
  const std::string assets = tmp / "assets";
  refused("storage.mount", {{"app", "web"}, {"spec", tmp / "missing:/x"}}, 2, "is not an existing directory");
  refused("storage.mount", {{"app", "web"}, {"spec", "relative:/x"}}, 2, R"(storage.mount: argument "spec")");
  refused("storage.mount", {{"app", "web"}, {"spec", assets}}, 2, "expected HOST:CONTAINER");
  refused("storage.mount", {{"app", "web"}, {"spec", assets + ":/x:rx"}}, 2, "expected HOST:CONTAINER");
  refused("storage.mount", {{"app", "web"}, {"spec", assets + ":/../x"}}, 2, "container path");
  refused("storage.mount", {{"app", "web"}, {"spec", assets + ":/data"}}, 2, "/data would be mounted twice");
  refused("storage.mount", {{"app", "web"}, {"spec", tmp.path() + ":/x"}}, 2, "overlaps the portalfs mountpoint");
  refused("storage.mount", {{"app", "web"}, {"spec", storage + "/apps/web:/x"}}, 2, "use grant");
  refused("storage.mount", {{"app", "ghost"}, {"spec", assets + ":/x"}}, 2, "app ghost is not installed");
  ok("storage.mount", {{"app", "web"}, {"spec", assets + ":/x"}});
  refused("storage.mount", {{"app", "web"}, {"spec", assets + ":/y"}}, 2, "is already mounted at /x");
  // Dokku's own layout: a storage directory below the storage root is fine.
  ok("storage.ensure-directory", {{"name", "cache"}});
  ok("storage.mount", {{"app", "web"}, {"spec", storage + "/storage/cache:/cache"}});
}

TEST_F(ManagerTest, StorageEnsureDirectory) {
  EXPECT_EQ(ok("storage.ensure-directory", {{"name", "uploads"}}),
            "-----> Ensuring " + storage + "/storage/uploads exists\n"
            "       Setting directory ownership to 32767:32767\n"
            "       Directory ready for mounting\n");
  struct stat st {};
  ASSERT_EQ(::stat((storage + "/storage/uploads").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 32767u);
  ok("storage.ensure-directory", {{"name", "uploads"}, {"chown", "heroku"}});
  ASSERT_EQ(::stat((storage + "/storage/uploads").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 1000u);
  EXPECT_THAT(ok("storage.ensure-directory", {{"name", "uploads"}, {"chown", "false"}}), Not(HasSubstr("ownership")));
  ASSERT_EQ(::stat((storage + "/storage/uploads").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 1000u);
  refused("storage.ensure-directory", {{"name", "../etc"}}, 2, R"(storage.ensure-directory: argument "name")");
  refused("storage.ensure-directory", {{"name", "x"}, {"chown", "root"}}, 2,
          R"(argument "chown": expected "herokuish", "heroku", "packeto" or "false", got "root")");
}

TEST_F(ManagerTest, AttachDetachAndHeal) {
  install(kNavidrome);
  const ProcessIdentity p100 = run(100);
  const ProcessIdentity p200 = run(200);
  EXPECT_EQ(ok("attach", {{"app", "navidrome"}, {"pid", 100}}), "attached 2 mount(s) of app navidrome to pid 100\n");
  ASSERT_EQ(attached.size(), 1u);
  EXPECT_EQ(attached[0].first, p100);
  EXPECT_EQ(attached[0].second, (std::vector<Bind>{{mnt + "/apps/navidrome/data/data", "/data", false},
                                                   {mnt + "/apps/navidrome/shared/own_media", "/music", true}}));
  ok("attach", {{"app", "navidrome"}, {"pid", 200}});
  ASSERT_EQ(saved_state().attachments.size(), 2u);
  EXPECT_EQ(saved_state().attachments[0].process, p100);  // what tells it from a later pid 100
  EXPECT_EQ(saved_state().attachments[1].process, p200);
  EXPECT_THAT(ok("app.show", {{"app", "navidrome"}}),
              HasSubstr("attached: pid 100 at /data, /music\nattached: pid 200 at /data, /music\n"));

  ok("detach", {{"app", "navidrome"}, {"pid", 200}});
  ASSERT_EQ(detached.size(), 1u);
  EXPECT_EQ(detached[0], (std::pair<ProcessIdentity, std::vector<std::string>>{p200, {"/music", "/data"}}));
  EXPECT_EQ(saved_state().attachments.size(), 1u);
  refused("detach", {{"app", "navidrome"}, {"pid", 200}}, 2, "app navidrome is not attached to pid 200");

  // A daemon restart: the live attachment comes back, a dead one is forgotten.
  ok("attach", {{"app", "navidrome"}, {"pid", 200}});
  processes.erase(200);
  attached.clear();
  start();
  EXPECT_EQ(mgr->heal_attachments(), 1);
  ASSERT_EQ(attached.size(), 1u);
  EXPECT_EQ(attached[0].first, p100);
  ASSERT_EQ(saved_state().attachments.size(), 1u);
  EXPECT_EQ(saved_state().attachments[0].pid, 100);

  // A view revoked whose live detach failed (recorded as still there) is taken out at the next
  // heal, not put back.
  detach_error = "umount2: Device or resource busy";
  ok("revoke", {{"app", "navidrome"}, {"share", "own_media"}});
  EXPECT_EQ(recorded_targets("navidrome", 100), (std::vector<std::string>{"/data", "/music"}));
  detach_error.clear();
  attached.clear();
  detached.clear();
  EXPECT_EQ(mgr->heal_attachments(), 1);
  ASSERT_EQ(detached.size(), 1u);
  EXPECT_EQ(detached[0].second, (std::vector<std::string>{"/music"}));
  ASSERT_EQ(attached.size(), 1u);
  EXPECT_EQ(attached[0].second.size(), 1u);
  EXPECT_EQ(recorded_targets("navidrome", 100), (std::vector<std::string>{"/data"}));

  // Removing the app forgets its attachments.
  ok("app.remove", {{"app", "navidrome"}});
  EXPECT_TRUE(saved_state().attachments.empty());
}

// Grants reach running containers (#12): a grant, a grant's new path, a new access and a
// revoke are carried out at once in every recorded attachment of the app, and only there.
TEST_F(ManagerTest, GrantsMovesAndRevokesReachAttachedContainersLive) {
  install(kNavidrome);
  install(R"({"v": "1", "name": "photos", "data_dirs": ["/data"]})");
  const ProcessIdentity p100 = run(100);
  const ProcessIdentity p200 = run(200);
  const ProcessIdentity p300 = run(300);
  ok("attach", {{"app", "navidrome"}, {"pid", 100}});
  ok("attach", {{"app", "navidrome"}, {"pid", 200}});
  ok("attach", {{"app", "photos"}, {"pid", 300}});
  clear_ops();

  // A new grant: bound in both containers of the app, nothing taken out, photos untouched.
  EXPECT_EQ(ok("grant", {{"app", "navidrome"}, {"share", "own_documents"}, {"access", "read-write"}, {"path", "/docs"}}),
            "granted share own_documents to app navidrome at /docs (read-write)\n");
  const Bind docs{shared_view("navidrome", "own_documents"), "/docs", false};
  EXPECT_EQ(attached, (std::vector<Attached>{{p100, {docs}}, {p200, {docs}}}));
  EXPECT_TRUE(detached.empty());
  EXPECT_EQ(recorded_targets("navidrome", 100), (std::vector<std::string>{"/data", "/docs", "/music"}));
  EXPECT_EQ(recorded_targets("navidrome", 200), (std::vector<std::string>{"/data", "/docs", "/music"}));
  EXPECT_EQ(recorded_targets("photos", 300), (std::vector<std::string>{"/data"}));
  EXPECT_THAT(ok("app.show", {{"app", "navidrome"}}),
              HasSubstr("attached: pid 100 at /data, /docs, /music\nattached: pid 200 at /data, /docs, /music\n"));
  const json shown = json::parse(ok("app.show", {{"app", "navidrome"}}, true));
  EXPECT_EQ(shown["attachments"], json::parse(R"([{"pid": 100, "paths": ["/data", "/docs", "/music"]},
                                                  {"pid": 200, "paths": ["/data", "/docs", "/music"]}])"));
  EXPECT_EQ(shown["attached_pids"], json::parse("[100, 200]"));

  // The same grant again changes nothing, in the state or in a container.
  clear_ops();
  ok("grant", {{"app", "navidrome"}, {"share", "own_documents"}, {"access", "read-write"}, {"path", "/docs"}});
  EXPECT_TRUE(attached.empty());
  EXPECT_TRUE(detached.empty());

  // Another path: the old one is detached, the new one attached.
  clear_ops();
  ok("grant", {{"app", "navidrome"}, {"share", "own_documents"}, {"access", "read-write"}, {"path", "/papers"}});
  const Bind papers{shared_view("navidrome", "own_documents"), "/papers", false};
  EXPECT_EQ(detached, (std::vector<Detached>{{p100, {"/docs"}}, {p200, {"/docs"}}}));
  EXPECT_EQ(attached, (std::vector<Attached>{{p100, {papers}}, {p200, {papers}}}));
  EXPECT_EQ(recorded_targets("navidrome", 100), (std::vector<std::string>{"/data", "/music", "/papers"}));

  // Read-only now: attached again at the same path (attach replaces what is mounted there).
  clear_ops();
  ok("grant", {{"app", "navidrome"}, {"share", "own_documents"}, {"access", "read"}, {"path", "/papers"}});
  const Bind papers_ro{shared_view("navidrome", "own_documents"), "/papers", true};
  EXPECT_EQ(attached, (std::vector<Attached>{{p100, {papers_ro}}, {p200, {papers_ro}}}));
  EXPECT_TRUE(detached.empty());
  EXPECT_EQ(saved_state().attachments[0].binds.back(), papers_ro);

  // A revoke: detached from both, nothing attached.
  clear_ops();
  EXPECT_EQ(ok("revoke", {{"app", "navidrome"}, {"share", "own_documents"}}),
            "revoked share own_documents from app navidrome\n");
  EXPECT_EQ(detached, (std::vector<Detached>{{p100, {"/papers"}}, {p200, {"/papers"}}}));
  EXPECT_TRUE(attached.empty());
  EXPECT_EQ(recorded_targets("navidrome", 100), (std::vector<std::string>{"/data", "/music"}));
  EXPECT_EQ(recorded_targets("navidrome", 200), (std::vector<std::string>{"/data", "/music"}));

  // A manifest share revoked, then granted back at its path.
  clear_ops();
  ok("revoke", {{"app", "navidrome"}, {"share", "own_media"}});
  EXPECT_EQ(detached, (std::vector<Detached>{{p100, {"/music"}}, {p200, {"/music"}}}));
  clear_ops();
  ok("grant", {{"app", "navidrome"}, {"share", "own_media"}, {"access", "read"}, {"path", "/music"}});
  const Bind music{shared_view("navidrome", "own_media"), "/music", true};
  EXPECT_EQ(attached, (std::vector<Attached>{{p100, {music}}, {p200, {music}}}));
  EXPECT_TRUE(detached.empty());
  EXPECT_EQ(recorded_targets("photos", 300), (std::vector<std::string>{"/data"}));
}

// A mount below one that is moved, replaced or detached goes along with it (MNT_DETACH takes
// the subtree): it is attached again, after its new parent.
TEST_F(ManagerTest, ABindBelowAChangedOneIsAttachedAgain) {
  install(kNavidrome);
  const ProcessIdentity p100 = run(100);
  ok("grant", {{"app", "navidrome"}, {"share", "own_documents"}, {"access", "read"}, {"path", "/music/notes"}});
  ok("attach", {{"app", "navidrome"}, {"pid", 100}});
  const Bind notes{shared_view("navidrome", "own_documents"), "/music/notes", true};

  // /music turns read-write: replaced, and /music/notes with it.
  clear_ops();
  ok("grant", {{"app", "navidrome"}, {"share", "own_media"}, {"access", "read-write"}, {"path", "/music"}});
  const Bind music_rw{shared_view("navidrome", "own_media"), "/music", false};
  EXPECT_TRUE(detached.empty());
  EXPECT_EQ(attached, (std::vector<Attached>{{p100, {music_rw, notes}}}));

  // /music moves to /media: /music is detached (and /music/notes with it), both attached again.
  clear_ops();
  ok("grant", {{"app", "navidrome"}, {"share", "own_media"}, {"access", "read-write"}, {"path", "/media"}});
  const Bind media{shared_view("navidrome", "own_media"), "/media", false};
  EXPECT_EQ(detached, (std::vector<Detached>{{p100, {"/music"}}}));
  EXPECT_EQ(attached, (std::vector<Attached>{{p100, {media, notes}}}));
  EXPECT_EQ(recorded_targets("navidrome", 100), (std::vector<std::string>{"/data", "/media", "/music/notes"}));
}

// A recorded process that is gone, or whose pid another process has now, is forgotten (with a
// log line) when its app's grants change, and never touched.
TEST_F(ManagerTest, AGrantForgetsADeadOrRecycledAttachmentWithoutTouchingIt) {
  install(kNavidrome);
  const ProcessIdentity p100 = run(100);
  run(200);
  run(300);
  for (int pid : {100, 200, 300}) ok("attach", {{"app", "navidrome"}, {"pid", pid}});
  processes.erase(200);
  run(300, 9000);  // a newcomer with the recorded pid
  clear_ops();

  const std::string log = logged([&] {
    EXPECT_EQ(ok("grant", {{"app", "navidrome"}, {"share", "own_documents"}, {"access", "read"}, {"path", "/docs"}}),
              "granted share own_documents to app navidrome at /docs (read)\n");
  });
  ASSERT_EQ(attached.size(), 1u);
  EXPECT_EQ(attached[0].first, p100);
  EXPECT_TRUE(detached.empty());
  EXPECT_THAT(log, HasSubstr("portalfs[info]: forgetting the attachment of navidrome to pid 200: no such process\n"));
  EXPECT_THAT(log, HasSubstr("portalfs[info]: forgetting the attachment of navidrome to pid 300: pid 300 is another "
                             "process now (started at tick 9000, the recorded one at tick 1000)\n"));
  ASSERT_EQ(saved_state().attachments.size(), 1u);
  EXPECT_EQ(saved_state().attachments[0].process, p100);
  EXPECT_THAT(ok("app.show", {{"app", "navidrome"}}), HasSubstr("attached: pid 100 at /data, /docs, /music\n"));
}

// A container the change can't reach does not fail the change: it is served and saved, and
// the reply names the app, the pid and why (one line each); the record keeps what the
// container has, so the next change tries again.
TEST_F(ManagerTest, AContainerTheGrantCantReachIsReportedAndTheGrantStands) {
  install(kNavidrome);
  const ProcessIdentity p100 = run(100);
  const ProcessIdentity p200 = run(200);
  ok("attach", {{"app", "navidrome"}, {"pid", 100}});
  ok("attach", {{"app", "navidrome"}, {"pid", 200}});
  clear_ops();
  attach_error_for[200] = "attach /docs into pid 200: mkdir /docs: Read-only file system";
  const std::size_t notices_before = notices.size();

  std::string output;
  const std::string log = logged([&] {
    output = ok("grant", {{"app", "navidrome"}, {"share", "own_documents"}, {"access", "read"}, {"path", "/docs"}});
  });
  const std::string line = "app navidrome, pid 200: container not brought up to date: attach /docs into pid 200: "
                           "mkdir /docs: Read-only file system";
  EXPECT_EQ(output, "granted share own_documents to app navidrome at /docs (read)\n" + line + "\n");
  EXPECT_THAT(log, HasSubstr("portalfs[warn]: " + line + "\n"));
  EXPECT_EQ(notices.size(), notices_before + 1);  // served
  EXPECT_EQ(mgr->views().size(), 3u);
  EXPECT_EQ(saved_state().apps.at("navidrome")->admin_grants.size(), 1u);  // saved
  EXPECT_EQ(recorded_targets("navidrome", 100), (std::vector<std::string>{"/data", "/docs", "/music"}));
  EXPECT_EQ(recorded_targets("navidrome", 200), (std::vector<std::string>{"/data", "/music"}));
  // The new target a failed attach may have mounted is taken out again: the record must not
  // miss a mount.
  EXPECT_EQ(detached, (std::vector<Detached>{{p200, {"/docs"}}}));

  // --format json: the output stays one JSON object, with the problems in it.
  clear_ops();
  attach_error_for[200] = "attach /papers into pid 200: mkdir /papers: Read-only file system";
  const json r = json::parse(
      ok("grant", {{"app", "navidrome"}, {"share", "own_documents"}, {"access", "read"}, {"path", "/papers"}}, true));
  EXPECT_EQ(r["share"], "own_documents");
  EXPECT_EQ(r["attachment_errors"],
            json::parse(R"([{"app": "navidrome", "pid": 200,
                             "error": "attach /papers into pid 200: mkdir /papers: Read-only file system"}])"));
  // pid 100 moved; pid 200, which never had /docs, was asked for /papers only.
  EXPECT_EQ(recorded_targets("navidrome", 100), (std::vector<std::string>{"/data", "/music", "/papers"}));
  ASSERT_GE(attached.size(), 2u);
  EXPECT_EQ(attached[1], (Attached{p200, {{shared_view("navidrome", "own_documents"), "/papers", true}}}));

  // Once the container can take it, the next change brings all of it.
  clear_ops();
  attach_error_for.clear();
  ok("grant", {{"app", "navidrome"}, {"share", "own_documents"}, {"access", "read-write"}, {"path", "/papers"}});
  EXPECT_EQ(recorded_targets("navidrome", 200), (std::vector<std::string>{"/data", "/music", "/papers"}));
  EXPECT_EQ(call("grant", {{"app", "navidrome"}, {"share", "own_documents"}, {"access", "read-write"},
                           {"path", "/papers"}}).count("warning"), 0u);
}

// An upgrade is a change of the app's grants like any other: a new data dir reaches its running
// containers. Its JSON output is not an object, so a container it can't reach is the
// response's warning (portalctl prints it to stderr; stdout stays the mounts' JSON).
TEST_F(ManagerTest, AnUpgradeReachesAttachedContainersAndJsonOutputsStayJson) {
  install(kNavidrome);
  const ProcessIdentity p100 = run(100);
  run(200);
  ok("attach", {{"app", "navidrome"}, {"pid", 100}});
  ok("attach", {{"app", "navidrome"}, {"pid", 200}});
  clear_ops();
  attach_error_for[200] = "attach /cache into pid 200: mkdir /cache: Read-only file system";

  const json r = call("app.upgrade", {{"manifest", kNavidromeNext}, {"source", "a"}}, true);
  ASSERT_EQ(r["ok"], true) << r.dump();
  EXPECT_TRUE(json::parse(r["output"].get<std::string>()).is_array()) << r.dump();
  EXPECT_EQ(r["warning"], "app navidrome, pid 200: container not brought up to date: attach /cache into pid 200: "
                          "mkdir /cache: Read-only file system");
  ASSERT_GE(attached.size(), 1u);
  EXPECT_EQ(attached[0], (Attached{p100, {{mnt + "/apps/navidrome/data/cache", "/cache", false}}}));
  EXPECT_EQ(recorded_targets("navidrome", 100), (std::vector<std::string>{"/cache", "/data", "/music"}));
  EXPECT_EQ(recorded_targets("navidrome", 200), (std::vector<std::string>{"/data", "/music"}));
}

TEST_F(ManagerTest, AttachRefusalsAndFailures) {
  install(kNavidrome);
  refused("attach", {{"app", "navidrome"}, {"pid", 999}}, 2, "process 999 does not exist");
  refused("attach", {{"app", "navidrome"}, {"pid", 0}}, 2, R"(attach: argument "pid": expected an integer from 1)");
  refused("attach", {{"app", "navidrome"}, {"pid", "1"}}, 2, R"(attach: argument "pid")");
  run(100);
  attach_error = "setns: Operation not permitted";
  refused("attach", {{"app", "navidrome"}, {"pid", 100}}, 1,
          "attaching app navidrome to pid 100: setns: Operation not permitted");
}

// The security bug this guards against: after a restart, a recorded pid may belong to another
// container's process. Healing must not give it the app's views.
TEST_F(ManagerTest, HealDropsARecordWhoseProcessIsAnotherOneNow) {
  install(kNavidrome);
  run(100);
  run(200);
  const ProcessIdentity p300 = run(300);
  run(400);
  for (int pid : {100, 200, 300, 400}) ok("attach", {{"app", "navidrome"}, {"pid", pid}});

  // While the daemon was down: pid 100 went to a newcomer, the process 200 moved to another
  // mount namespace, 300 is untouched, and 400 is a process of the next boot that happens to
  // look like the recorded one in everything else.
  const ProcessIdentity newcomer = run(100, 5000);
  processes[200].mnt_ns_ino = 4026539999u;
  processes[400].boot_id = "boot-2";
  attached.clear();
  detached.clear();
  start();
  const std::string log = logged([&] { EXPECT_EQ(mgr->heal_attachments(), 1); });

  ASSERT_EQ(attached.size(), 1u);
  EXPECT_EQ(attached[0].first, p300);
  EXPECT_TRUE(detached.empty());
  EXPECT_THAT(log, HasSubstr("portalfs[info]: forgetting the attachment of navidrome to pid 100: pid 100 is another "
                             "process now (started at tick 5000, the recorded one at tick 1000)\n"));
  EXPECT_THAT(log, HasSubstr("portalfs[info]: forgetting the attachment of navidrome to pid 200: the process is in "
                             "another mount namespace now (4:4026539999, recorded 4:"));
  EXPECT_THAT(log, HasSubstr("portalfs[info]: forgetting the attachment of navidrome to pid 400: pid 400 is another "
                             "process now (recorded before a reboot: boot boot-1, now boot-2)\n"));
  ASSERT_EQ(saved_state().attachments.size(), 1u);
  EXPECT_EQ(saved_state().attachments[0].process, p300);

  // The newcomer can be attached in its own right, and is recorded as itself.
  ok("attach", {{"app", "navidrome"}, {"pid", 100}});
  EXPECT_EQ(attached.back().first, newcomer);
  EXPECT_EQ(saved_state().attachments.back().process, newcomer);
}

// A state file from before identities were kept: it loads, but its records can't be verified,
// so they are dropped at heal, never re-attached (not even to a pid that is alive).
TEST_F(ManagerTest, HealDropsARecordWithoutAnIdentity) {
  install(kNavidrome);
  run(100);
  ok("attach", {{"app", "navidrome"}, {"pid", 100}});
  mgr.reset();  // stopped: state.json is then the whole state, to edit
  json doc = json::parse(read_file(state_dir + "/state.json"));
  doc["attachments"][0].erase("start_time");
  doc["attachments"][0].erase("mnt_ns");
  doc["attachments"][0].erase("boot_id");
  write_file(state_dir + "/state.json", doc.dump(2));
  attached.clear();
  start();
  ASSERT_EQ(saved_state().attachments.size(), 1u);
  EXPECT_EQ(saved_state().attachments[0].process, std::nullopt);

  const std::string log = logged([&] { EXPECT_EQ(mgr->heal_attachments(), 0); });
  EXPECT_TRUE(attached.empty());
  EXPECT_TRUE(detached.empty());
  EXPECT_THAT(log, HasSubstr("portalfs[info]: forgetting the attachment of navidrome to pid 100: recorded without "
                             "the process's start time and mount namespace (by an older portalfs), so it can't be "
                             "told from another process with that pid\n"));
  EXPECT_TRUE(saved_state().attachments.empty());
}

// detach of a record whose pid now belongs to a newcomer (or to no one) drops the record and
// touches no namespace: the newcomer may have mounts of its own at those paths.
TEST_F(ManagerTest, DetachOfARecycledPidForgetsWithoutTouchingTheNewcomer) {
  install(kNavidrome);
  run(100);
  run(200);
  ok("attach", {{"app", "navidrome"}, {"pid", 100}});
  ok("attach", {{"app", "navidrome"}, {"pid", 200}});
  run(100, 7000);
  processes.erase(200);

  json gone;
  const std::string log = logged([&] {
    EXPECT_EQ(ok("detach", {{"app", "navidrome"}, {"pid", 100}}),
              "forgot the attachment of app navidrome to pid 100 without touching any mount: pid 100 is another "
              "process now (started at tick 7000, the recorded one at tick 1000)\n");
    gone = json::parse(ok("detach", {{"app", "navidrome"}, {"pid", 200}}, true));
  });
  EXPECT_EQ(gone["detached"], false);
  EXPECT_EQ(gone["forgotten_because"], "no such process");
  EXPECT_THAT(log, HasSubstr("portalfs[info]: forgetting the attachment of navidrome to pid 100: pid 100 is another"));
  EXPECT_THAT(log, HasSubstr("portalfs[info]: forgetting the attachment of navidrome to pid 200: no such process\n"));
  EXPECT_TRUE(detached.empty());
  EXPECT_TRUE(saved_state().attachments.empty());

  // The recorded process itself is detached, as before.
  const ProcessIdentity p300 = run(300);
  ok("attach", {{"app", "navidrome"}, {"pid", 300}});
  const json done = json::parse(ok("detach", {{"app", "navidrome"}, {"pid", 300}}, true));
  EXPECT_EQ(done["detached"], true);
  ASSERT_EQ(detached.size(), 1u);
  EXPECT_EQ(detached[0].first, p300);
}

TEST_F(ManagerTest, SaveFailureChangesNothing) {
  install(kNavidrome);
  const auto views_before = mgr->views();
  const std::size_t notices_before = notices.size();
  fs::remove_all(state_dir);  // the next save can't create its temp file
  const ProcessIdentity p100 = run(100);
  const json r = call("grant", {{"app", "navidrome"}, {"share", "own_documents"}, {"access", "read"}, {"path", "/docs"}});
  EXPECT_EQ(r["code"], 1);
  EXPECT_THAT(r["error"].get<std::string>(), HasSubstr("cannot save " + state_dir + "/state.json"));
  EXPECT_EQ(mgr->views(), views_before);
  EXPECT_EQ(notices.size(), notices_before);
  EXPECT_THAT(ok("app.show", {{"app", "navidrome"}}), Not(HasSubstr("own_documents")));

  // An attach whose record can't be saved is taken back out.
  EXPECT_EQ(call("attach", {{"app", "navidrome"}, {"pid", 100}})["code"], 1);
  ASSERT_EQ(detached.size(), 1u);
  EXPECT_EQ(detached[0].first, p100);
}

TEST_F(ManagerTest, Status) {
  install(kNavidrome);
  const std::string text = ok("status");
  EXPECT_THAT(text, HasSubstr("portalfs " PORTALFS_VERSION "\n"));
  EXPECT_THAT(text, HasSubstr("mountpoint: " + mnt + "\n"));
  EXPECT_THAT(text, HasSubstr("apps: 1\nviews: 2\nattachments: 0\n"));
  EXPECT_THAT(text, HasSubstr("filesystem.fuse: 3.14\nfilesystem.mounted: true\n"));
  const json j = json::parse(ok("status", {}, true));
  EXPECT_EQ(j["version"], PORTALFS_VERSION);
  EXPECT_EQ(j["storage_root"], storage);
  EXPECT_EQ(j["apps"], 1);
  EXPECT_EQ(j["views"], 2);
  EXPECT_EQ(j["filesystem"]["mounted"], true);
}

TEST_F(ManagerTest, StateSurvivesARestart) {
  install(kNavidrome);
  ok("share.create", {{"name", "music"}});
  const auto views = mgr->views();
  start();
  EXPECT_EQ(mgr->views(), views);
  EXPECT_EQ(ok("app.list"), "navidrome 3.1\n");
}

TEST_F(ManagerTest, SecondManagerOnTheSameStateIsRefused) {
  try {
    Manager second(config(), {});
    FAIL() << "second manager started";
  } catch (const StateError& e) {
    EXPECT_THAT(e.what(), HasSubstr("another portalfsd"));
  }
}

TEST_F(ManagerTest, CorruptStateRefusesToStartAndRecoversFromBackup) {
  install(kNavidrome);
  ok("share.create", {{"name", "music"}});
  mgr.reset();  // the stop folds the journal in: state.json.bak and state.journal.bak hold it all
  const std::string text = read_file(state_dir + "/state.json");
  write_file(state_dir + "/state.json", text.substr(0, text.size() / 3));
  try {
    Manager broken(config(), {});
    FAIL() << "started on a torn state";
  } catch (const StateError& e) {
    EXPECT_THAT(e.what(), HasSubstr(state_dir + "/state.json: is not valid JSON"));
    EXPECT_THAT(e.what(), HasSubstr("--recover-from-backup"));
  }
  ManagerConfig c = config();
  c.recover_from_backup = true;
  Manager recovered(c, {});
  EXPECT_EQ(recovered.handle({{"verb", "app.list"}})["output"], "navidrome 3.1\n");
  // The backup and the journal records after it: nothing is lost.
  EXPECT_EQ(recovered.handle({{"verb", "share.list"}})["output"], "music 0:0\nown_documents 0:0\nown_media 0:0\n");
  EXPECT_TRUE(fs::exists(state_dir + "/state.json.corrupt"));
  EXPECT_NO_THROW(saved_state());  // state.json is good again at once
}

TEST_F(ManagerTest, ConcurrentRequestsAllLand) {
  std::vector<std::thread> threads;
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([this, i] {
      for (int j = 0; j < 5; ++j) {
        mgr->handle({{"verb", "share.create"}, {"args", {{"name", "s" + std::to_string(i) + "_" + std::to_string(j)}}}});
        mgr->handle({{"verb", "share.list"}});
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(saved_state().shares.size(), 2u + 40u);
}

// Concurrent commits: callbacks arrive in commit order (each install adds one view, so the
// counts seen are 1, 2, 3, ...), and a callback may look at the manager meanwhile.
TEST_F(ManagerTest, CallbacksArriveInCommitOrder) {
  std::mutex seen_mutex;
  std::vector<std::size_t> counts;
  mgr.reset();
  mgr = std::make_unique<Manager>(config(), [&](const policy::ViewSpecs& v, const policy::ViewSpecs&) {
    (void)mgr->views();
    std::lock_guard lock(seen_mutex);
    counts.push_back(v.size());
  });
  std::vector<std::thread> threads;
  for (int i = 0; i < 6; ++i) {
    threads.emplace_back([this, i] {
      for (int j = 0; j < 4; ++j) {
        const std::string name = "app" + std::to_string(i) + "-" + std::to_string(j);
        const json r = mgr->handle({{"verb", "app.install"},
                                    {"args", {{"manifest", R"({"name": ")" + name + R"(", "data_dirs": ["/d"]})"},
                                              {"source", "a"}}}});
        EXPECT_TRUE(r["ok"].get<bool>()) << r.dump();
      }
    });
  }
  for (auto& t : threads) t.join();
  ASSERT_EQ(counts.size(), 24u);
  for (std::size_t i = 0; i < counts.size(); ++i) EXPECT_EQ(counts[i], i + 1);
}

TEST_F(ManagerTest, CallbackRunsOutsideTheLock) {
  // The callback may look at the manager (views()) without deadlocking.
  policy::ViewSpecs seen;
  mgr.reset();
  mgr = std::make_unique<Manager>(config(), [&](const policy::ViewSpecs&, const policy::ViewSpecs&) { seen = mgr->views(); });
  install(kNavidrome);
  EXPECT_EQ(seen.size(), 2u);
}

}  // namespace
}  // namespace portalfs::mountmgr
