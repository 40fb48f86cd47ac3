// SPDX-License-Identifier: MIT
// app install / upgrade / remove of a compose app through Manager::handle (the requests
// portalctl sends): records per service, data dirs shared below apps/<app>/ with the owners of
// the services that mount them, views, refusals that change nothing.

#include <sys/stat.h>

#include <filesystem>
#include <gtest/gtest.h>
#include <map>

#include "mountmgr/manager.hpp"
#include "policy/compose.hpp"
#include "tests/testutil/process.hpp"
#include "tests/testutil/temp_dir.hpp"

namespace portalfs::mountmgr {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using testutil::TempDir;

// Two services share `data`; db runs as 999 (PUID), web as 1000 (user:); web also reads a share.
constexpr auto kTemplate = R"(services:
  web:
    image: example/web
    user: "1000:1000"
    volumes:
      - "{{ fs.app_data }}/data:/srv/data"
      - "{{ fs.shared }}/own_media:/srv/data/media:ro"
      - /var/run/docker.sock:/var/run/docker.sock
  db:
    image: postgres
    environment:
      - PUID=999
      - PGID=999
    volumes:
      - "{{ fs.app_data }}/data/pg:/var/lib/postgresql/data"
)";

std::string snapshot(const std::string& dir) {
  std::string out;
  std::map<std::string, std::string> entries;
  for (auto it = fs::recursive_directory_iterator(dir); it != fs::recursive_directory_iterator(); ++it) {
    struct stat st {};
    ::lstat(it->path().c_str(), &st);
    std::string line = std::to_string(st.st_mode) + " " + std::to_string(st.st_uid) + ":" + std::to_string(st.st_gid);
    if (S_ISREG(st.st_mode)) line += " " + testutil::read_file(it->path().string());
    entries[it->path().string()] = line;
  }
  for (const auto& [p, l] : entries) out += p + " " + l + "\n";
  return out;
}

struct stat stat_of(const std::string& path) {
  struct stat st {};
  EXPECT_EQ(::lstat(path.c_str(), &st), 0) << path;
  return st;
}

class ComposeInstall : public ::testing::Test {
 protected:
  TempDir tmp;
  std::string storage = tmp / "storage";
  std::string mnt = tmp / "mnt";
  std::unique_ptr<Manager> mgr;
  policy::ViewSpecs last_views;

  void SetUp() override {
    fs::create_directories(mnt);
    ManagerConfig c;
    c.storage_root = storage;
    c.state_dir = tmp / "state";
    c.mountpoint = mnt;
    mgr = std::make_unique<Manager>(c, [this](const policy::ViewSpecs& v, const policy::ViewSpecs&) { last_views = v; });
  }

  json request(const std::string& verb, json args) {
    return mgr->handle({{"verb", verb}, {"format", "text"}, {"args", std::move(args)}});
  }
  json install_args(const std::string& text, const std::string& name = "shop") {
    return {{"manifest", text}, {"source", "t.yml"}, {"compose", true}, {"name", name},
            {"installation_dir", tmp / "app"}, {"version", "1.0"}};
  }
  const policy::ViewSpec* view(const std::string& app, const std::string& dir_name) const {
    for (const auto& v : last_views) {
      if (v.app == app && v.dir_name == dir_name) return &v;
    }
    return nullptr;
  }
  void refused(const std::string& verb, json args, const std::string& message) {
    const std::string before = snapshot(tmp.path());
    const json r = request(verb, std::move(args));
    EXPECT_FALSE(r.value("ok", true)) << r.dump();
    EXPECT_EQ(r.value("code", 0), 2);
    EXPECT_EQ(r.value("error", ""), message);
    EXPECT_EQ(snapshot(tmp.path()), before) << "a refused request changed the disk";
  }
};

TEST_F(ComposeInstall, ServicesShareTheAppsDataWithTheirOwnOwners) {
  const json r = request("app.install", install_args(kTemplate));
  ASSERT_TRUE(r.value("ok", false)) << r.dump();
  const std::string out = r["output"];
  EXPECT_NE(out.find("service web (app shop--web):\n"), std::string::npos) << out;
  EXPECT_NE(out.find("service db (app shop--db):\n"), std::string::npos) << out;
  EXPECT_NE(out.find(mnt + "/apps/shop--web/data/data:/srv/data"), std::string::npos) << out;
  EXPECT_NE(out.find(mnt + "/apps/shop--web/shared/own_media:/srv/data/media:ro"), std::string::npos) << out;
  EXPECT_NE(out.find("/var/run/docker.sock at /var/run/docker.sock: not mediated by portalfs"), std::string::npos);

  // On disk: below the compose app, owned by the service that mounts each (web made data,
  // db made data/pg); nothing below apps/shop--web.
  const auto data = stat_of(storage + "/apps/shop/data");
  EXPECT_EQ(data.st_uid, 1000u);
  EXPECT_EQ(data.st_gid, 1000u);
  const auto pg = stat_of(storage + "/apps/shop/data/pg");
  EXPECT_EQ(pg.st_uid, 999u);
  EXPECT_EQ(pg.st_gid, 999u);
  EXPECT_FALSE(fs::exists(storage + "/apps/shop--web"));

  // Views: each service sees its data as itself.
  const auto* web_data = view("shop--web", "data");
  ASSERT_NE(web_data, nullptr);
  EXPECT_EQ(web_data->backing, storage + "/apps/shop/data");
  ASSERT_TRUE(web_data->ids.squash.has_value());
  EXPECT_EQ(web_data->ids.squash->present_uid, 1000u);
  EXPECT_EQ(web_data->ids.squash->store_uid, 1000u);
  const auto* db_data = view("shop--db", "data%2Fpg");
  ASSERT_NE(db_data, nullptr);
  EXPECT_EQ(db_data->backing, storage + "/apps/shop/data/pg");
  EXPECT_EQ(db_data->ids.squash->present_uid, 999u);
  const auto* media = view("shop--web", "own_media");
  ASSERT_NE(media, nullptr);
  EXPECT_EQ(media->access, policy::Access::read);

  // mounts of one service, parents first.
  const json mounts = request("mounts", {{"app", "shop--web"}, {"style", "docker"}});
  ASSERT_TRUE(mounts.value("ok", false)) << mounts.dump();
  const std::string m = mounts["output"];
  EXPECT_LT(m.find(":/srv/data\n"), m.find(":/srv/data/media")) << m;

  // The same again is no change; a different template is an upgrade.
  EXPECT_TRUE(request("app.install", install_args(kTemplate)).value("ok", false));
  refused("app.install", install_args("services:\n  web:\n    image: x\n"), "app shop is installed; use app upgrade");

  // Upgrade without db: its record goes, the data stays.
  ASSERT_TRUE(request("app.upgrade", install_args("services:\n  web:\n    image: x\n    user: \"1000\"\n    volumes:\n"
                                                  "      - \"{{ fs.app_data }}/data:/srv/data\"\n"))
                  .value("ok", false));
  EXPECT_EQ(view("shop--db", "data%2Fpg"), nullptr);
  EXPECT_TRUE(fs::exists(storage + "/apps/shop/data/pg"));

  // Remove: every service; data kept, then purged.
  const json removed = request("app.remove", {{"app", "shop"}});
  ASSERT_TRUE(removed.value("ok", false)) << removed.dump();
  EXPECT_EQ(view("shop--web", "data"), nullptr);
  EXPECT_TRUE(fs::exists(storage + "/apps/shop/data"));
  EXPECT_FALSE(request("app.remove", {{"app", "shop"}}).value("ok", true));
}

TEST_F(ComposeInstall, ExistingDataKeepsItsBytesOwnersAndModes) {
  fs::create_directories(storage + "/apps/shop/data/pg/base");
  testutil::write_file(storage + "/apps/shop/data/pg/base/1", "rows");
  ASSERT_EQ(::chown((storage + "/apps/shop/data/pg/base/1").c_str(), 70, 70), 0);
  ASSERT_EQ(::chmod((storage + "/apps/shop/data/pg").c_str(), 0700), 0);
  const std::string before = snapshot(storage + "/apps/shop/data");
  const auto pg_before = stat_of(storage + "/apps/shop/data/pg");
  ASSERT_TRUE(request("app.install", install_args(kTemplate)).value("ok", false));
  // The one thing added: the mount point of own_media (at /srv/data/media, inside data), owned
  // as data is; a runtime binds the share there.
  const auto media = stat_of(storage + "/apps/shop/data/media");
  EXPECT_TRUE(S_ISDIR(media.st_mode));
  EXPECT_EQ(media.st_uid, 1000u);
  ASSERT_EQ(::rmdir((storage + "/apps/shop/data/media").c_str()), 0);
  EXPECT_EQ(snapshot(storage + "/apps/shop/data"), before);  // no marker, chown or chmod inside
  const auto pg = stat_of(storage + "/apps/shop/data/pg");
  EXPECT_EQ(pg.st_mode, pg_before.st_mode);
  EXPECT_EQ(pg.st_uid, pg_before.st_uid);
}

// immich: the share pictures is mounted at upload/library, inside the data dir upload. The
// mount point exists in the data dir (each component owned as upload), an existing one is kept
// as it is, and a symlink planted there is refused.
TEST_F(ComposeInstall, ShareMountedInsideADataDirHasItsMountPoint) {
  constexpr auto kImmich = R"(services:
  server:
    user: "1000:1000"
    volumes:
      - "{{ fs.app_data }}/upload:/usr/src/app/upload"
      - "{{ fs.shared }}/pictures:/usr/src/app/upload/library/pictures"
)";
  ASSERT_TRUE(request("share.create", {{"name", "pictures"}}).value("ok", false));
  const json r = request("app.install", install_args(kImmich));
  ASSERT_TRUE(r.value("ok", false)) << r.dump();
  for (const char* rel : {"upload/library", "upload/library/pictures"}) {
    const auto st = stat_of(storage + "/apps/shop/" + rel);
    EXPECT_TRUE(S_ISDIR(st.st_mode)) << rel;
    EXPECT_EQ(st.st_uid, 1000u) << rel;
    EXPECT_EQ(st.st_gid, 1000u) << rel;
  }
  const std::string m = request("mounts", {{"app", "shop--server"}, {"style", "docker"}})["output"];
  EXPECT_LT(m.find(":/usr/src/app/upload\n"), m.find(":/usr/src/app/upload/library/pictures")) << m;

  // Upgrading keeps what is there (an app's own files in library/ stay).
  testutil::write_file(storage + "/apps/shop/upload/library/pictures/.keep", "k");
  ASSERT_EQ(::chown((storage + "/apps/shop/upload/library").c_str(), 1234, 1234), 0);
  ASSERT_TRUE(request("app.upgrade", install_args(kImmich)).value("ok", false));
  EXPECT_EQ(stat_of(storage + "/apps/shop/upload/library").st_uid, 1234u);
  EXPECT_EQ(testutil::read_file(storage + "/apps/shop/upload/library/pictures/.keep"), "k");
}

TEST_F(ComposeInstall, SymlinkPlantedOnAMountPointIsRefused) {
  constexpr auto kImmich = R"(services:
  server:
    volumes:
      - "{{ fs.app_data }}/upload:/usr/src/app/upload"
      - "{{ fs.shared }}/pictures:/usr/src/app/upload/library"
)";
  ASSERT_TRUE(request("share.create", {{"name", "pictures"}}).value("ok", false));
  fs::create_directories(storage + "/apps/shop/upload");
  fs::create_directories(tmp / "elsewhere");
  fs::create_directory_symlink(tmp / "elsewhere", storage + "/apps/shop/upload/library");
  const std::string before = snapshot(tmp.path());
  const json r = request("app.install", install_args(kImmich));
  EXPECT_FALSE(r.value("ok", true)) << r.dump();
  EXPECT_EQ(r.value("code", 0), 2) << r.dump();
  EXPECT_NE(r.value("error", "").find("service server"), std::string::npos) << r.dump();
  EXPECT_EQ(snapshot(tmp.path()), before);
  EXPECT_TRUE(fs::is_empty(tmp / "elsewhere"));
}

// --share: the operator's access for a share wins over the template's, is kept by an upgrade
// that gives none, and is replaced by one that gives some.
TEST_F(ComposeInstall, OperatorShareRulesWinAndAreKept) {
  auto args = install_args(kTemplate);  // own_media is :ro in the template
  args["share_access"] = {"own_media=read-write"};
  ASSERT_TRUE(request("app.install", args).value("ok", false));
  ASSERT_NE(view("shop--web", "own_media"), nullptr);
  EXPECT_EQ(view("shop--web", "own_media")->access, policy::Access::read_write);
  // The same install again (same rules) is no change; without the rules it still is.
  EXPECT_TRUE(request("app.install", args).value("ok", false));
  ASSERT_TRUE(request("app.upgrade", install_args(kTemplate)).value("ok", false));
  EXPECT_EQ(view("shop--web", "own_media")->access, policy::Access::read_write);
  args["share_access"] = {"*=read"};
  ASSERT_TRUE(request("app.upgrade", args).value("ok", false));
  EXPECT_EQ(view("shop--web", "own_media")->access, policy::Access::read);
  args["share_access"] = json::array();  // back to the template's
  ASSERT_TRUE(request("app.upgrade", args).value("ok", false));
  EXPECT_EQ(view("shop--web", "own_media")->access, policy::Access::read);
  // The rules are kept across a restart (state.json).
  args["share_access"] = {"own_media=read-write"};
  ASSERT_TRUE(request("app.upgrade", args).value("ok", false));
  mgr.reset();
  SetUp();
  mgr->start();
  ASSERT_TRUE(request("app.upgrade", install_args(kTemplate)).value("ok", false));
  EXPECT_EQ(view("shop--web", "own_media")->access, policy::Access::read_write);

  args["share_access"] = {"own_media=write"};
  refused("app.upgrade", args,
          "app.upgrade: argument \"share_access\": expected NAME=MODE, MODE one of read, read-write, create-only, no-delete, own-files (NAME a share, or * for every share), "
          "got \"own_media=write\"");
}

// {{ fs.app_data }} alone: the app's whole directory (its data dirs and anything else in it).
TEST_F(ComposeInstall, BareAppDataIsTheAppsWholeDirectory) {
  const json r = request("app.install", install_args("services:\n  web:\n    volumes:\n"
                                                     "      - \"{{ fs.app_data }}:/data\"\n"
                                                     "      - \"{{ fs.app_data }}/db:/db\"\n"));
  ASSERT_TRUE(r.value("ok", false)) << r.dump();
  bool found = false;
  for (const auto& v : last_views) {
    if (v.app == "shop--web" && v.backing == storage + "/apps/shop") found = true;
  }
  EXPECT_TRUE(found);
  EXPECT_TRUE(fs::is_directory(storage + "/apps/shop/db"));
}

TEST_F(ComposeInstall, RefusalsChangeNothing) {
  refused("app.install",
          install_args("services:\n  files:\n    volumes:\n      - \"{{ fs.all_app_data }}:/all\"\n"),
          "t.yml:4:9: service files, volume 1 (\"{{ fs.all_app_data }}:/all\"): {{ fs.all_app_data }} gives "
          "every app's data; allow it with --allow-all-app-data");
  refused("app.install", install_args("services:\n  web:\n    volumes:\n      - \"{{ fs.shared }}/nope:/n\"\n"),
          "share 'nope' does not exist; create it with: portalctl share create nope");
  refused("app.install", install_args("services:\n  web: [\n"), "t.yml:3:1: end of sequence flow not found");
  refused("app.upgrade", install_args(kTemplate), "app shop is not installed; use app install");
}

TEST_F(ComposeInstall, SymlinkPlantedInTheBackingStoreIsRefused) {
  fs::create_directories(storage + "/apps/shop");
  fs::create_directories(tmp / "elsewhere");
  fs::create_symlink(tmp / "elsewhere", storage + "/apps/shop/data");
  const std::string before = snapshot(tmp.path());
  const json r = request("app.install", install_args(kTemplate));
  EXPECT_FALSE(r.value("ok", true)) << r.dump();
  EXPECT_EQ(r.value("code", 0), 2);
  EXPECT_EQ(r.value("error", ""), "t.yml:6:9: service web, volume 1 (\"{{ fs.app_data }}/data:/srv/data\"): " + storage +
                                      "/apps/shop/data: is a symbolic link or not a directory; refusing to follow it");
  EXPECT_EQ(snapshot(tmp.path()), before);
  EXPECT_TRUE(fs::is_empty(tmp / "elsewhere"));
}

TEST_F(ComposeInstall, AllAppDataWhenAllowed) {
  json args = install_args("services:\n  files:\n    volumes:\n      - \"{{ fs.all_app_data }}:/all\"\n"
                           "      - \"{{ fs.shared }}:/shared\"\n      - \"{{ fs.installation_dir }}/conf:/conf\"\n",
                           "files");
  args["allow_all_app_data"] = true;
  const json r = request("app.install", args);
  ASSERT_TRUE(r.value("ok", false)) << r.dump();
  std::map<std::string, const policy::ViewSpec*> by_backing;
  for (const auto& v : last_views) by_backing[v.backing] = &v;
  ASSERT_TRUE(by_backing.contains(storage + "/apps"));
  ASSERT_TRUE(by_backing.contains(storage + "/shared"));
  ASSERT_TRUE(by_backing.contains(tmp / "app/conf"));
  EXPECT_EQ(by_backing[tmp / "app/conf"]->access, policy::Access::read);
}

// Every app of a store folder installs (its shares created first), gives mounts for every
// service, and is removed again. Returns how many apps.
int install_store(const fs::path& store) {
  TempDir tmp;
  fs::create_directories(tmp / "mnt");
  ManagerConfig c;
  c.storage_root = tmp / "storage";
  c.state_dir = tmp / "state";
  c.mountpoint = tmp / "mnt";
  Manager mgr(c, [](const policy::ViewSpecs&, const policy::ViewSpecs&) {});
  auto call = [&](const std::string& verb, json args) {
    return mgr.handle({{"verb", verb}, {"format", "text"}, {"args", std::move(args)}});
  };
  int apps = 0;
  for (const auto& entry : fs::directory_iterator(store)) {
    const fs::path file = entry.path() / "docker-compose.yml.template";
    // shapes has a bare {{ fs.app_data }}, refused for now (compose_cli_test checks that).
    if (!fs::exists(file) || entry.path().filename() == "shapes") continue;
    SCOPED_TRACE(file.string());
    const std::string text = testutil::read_file(file.string());
    const std::string app = policy::app_id_from_name(entry.path().filename().string());
    const auto compose = policy::parse_compose(text, file.string());
    for (const auto& s : compose.services) {
      for (const auto& v : s.volumes) {
        if (v.mediated && v.var == policy::FsVar::shared && !v.sub.empty()) {
          call("share.create", {{"name", v.sub.substr(0, v.sub.find('/'))}});  // "exists" is fine
        }
      }
    }
    const json r = call("app.install", {{"manifest", text}, {"source", file.string()}, {"compose", true},
                                        {"name", app}, {"installation_dir", entry.path().string()},
                                        {"allow_all_app_data", true}});
    EXPECT_TRUE(r.value("ok", false)) << r.dump();
    for (const auto& s : compose.services) {
      const json m = call("mounts", {{"app", policy::service_app_id(app, s.name, "")}, {"style", "oci"}});
      EXPECT_TRUE(m.value("ok", false)) << m.dump();
      if (!m.value("ok", false)) continue;
      std::size_t mediated = 0;
      for (const auto& v : s.volumes) mediated += v.mediated ? 1 : 0;
      EXPECT_EQ(json::parse(m["output"].get<std::string>()).size(), mediated) << s.name;
    }
    EXPECT_TRUE(call("app.remove", {{"app", app}}).value("ok", false));
    ++apps;
  }
  return apps;
}

TEST(ComposeStoreInstall, RepositoryFixtures) {
  EXPECT_EQ(install_store(fs::path(testutil::source_dir()) / "tests/fixtures/compose"), 5);
}

TEST(ComposeStoreInstall, OptionalFreeshardStoreWhenPresent) {
  if (const auto store = testutil::optional_corpus("freeshard-apps")) {
    EXPECT_EQ(install_store(*store), testutil::count_compose_apps(*store));
  }
}

}  // namespace
}  // namespace portalfs::mountmgr
