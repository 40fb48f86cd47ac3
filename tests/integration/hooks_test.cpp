// SPDX-License-Identifier: MIT
// The platforms' install hooks against the real portalfsd: hooks/freeshard-hook with an app
// folder of the store, and the Dokku plugin's triggers called as Dokku calls them (arguments,
// docker arguments so far on stdin, DOKKU_* / PLUGIN_* environment).

#include <gtest/gtest.h>
#include <signal.h>

#include <filesystem>

#include "tests/testutil/daemon_fixture.hpp"

namespace portalfs::testutil {
namespace {

namespace fs = std::filesystem;

class Hooks : public DaemonFixture {
 protected:
  // Runs `argv` with the environment a platform would give it, and `input` on stdin.
  CommandResult run(const std::vector<std::string>& argv, const std::string& input = "") {
    std::vector<std::string> cmd = {"/usr/bin/env",
                                    "-i",
                                    "PATH=/usr/bin:/bin",
                                    "PORTALCTL=" + program("portalctl"),
                                    "PORTALFS_SOCKET=" + sock(),
                                    "PORTALFS_MOUNTPOINT=" + mnt(),
                                    "DOKKU_ROOT=/home/dokku",
                                    "DOKKU_LIB_ROOT=/var/lib/dokku",
                                    "PLUGIN_PATH=/var/lib/dokku/plugins",
                                    "PLUGIN_AVAILABLE_PATH=/var/lib/dokku/plugins/available",
                                    "PLUGIN_ENABLED_PATH=/var/lib/dokku/plugins/enabled",
                                    "PLUGIN_CORE_AVAILABLE_PATH=/var/lib/dokku/core-plugins/available",
                                    "/bin/bash",
                                    "-c",
                                    "printf '%s' \"$0\" | \"$@\"",
                                    input};
    cmd.insert(cmd.end(), argv.begin(), argv.end());
    return run_command(cmd);
  }
  std::string hook() const { return source_dir() + "/hooks/freeshard-hook"; }
  std::string trigger(const std::string& name) const { return source_dir() + "/dokku/portalfs/" + name; }
  std::string app_folder() const { return dir_ / "installed/immich"; }
};

TEST_F(Hooks, FreeshardInstallUpgradeUninstall) {
  ASSERT_NO_FATAL_FAILURE(start());
  ASSERT_EQ(ctl({"share", "create", "pictures"}).code, 0);
  fs::create_directories(app_folder());
  for (const char* f : {"docker-compose.yml.template", "app_meta.json"}) {
    fs::copy_file(source_dir() + "/tests/fixtures/compose/immich/" + f, app_folder() + "/" + f);
  }
  const std::string tmpl = read_file(app_folder() + "/docker-compose.yml.template");

  auto r = run({hook(), "install", app_folder()});
  ASSERT_EQ(r.code, 0) << r.err;
  const std::string rendered = read_file(app_folder() + "/docker-compose.portalfs.yml.template");
  EXPECT_NE(rendered.find("\"" + mnt() + "/apps/immich--immich-server/data/upload:/usr/src/app/upload\""),
            std::string::npos)
      << rendered;
  EXPECT_NE(rendered.find("${IMMICH_VERSION:-release}"), std::string::npos);
  EXPECT_EQ(read_file(app_folder() + "/docker-compose.yml.template"), tmpl) << "the template itself is kept";
  EXPECT_TRUE(fs::is_directory(mnt() + "/apps/immich--database/data/pgdata"));
  EXPECT_TRUE(fs::is_directory(storage() + "/apps/immich/pgdata"));

  r = run({hook(), "upgrade", app_folder()});
  ASSERT_EQ(r.code, 0) << r.err;

  write_file(storage() + "/apps/immich/pgdata/keep", "x");
  r = run({hook(), "uninstall", app_folder()});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_FALSE(fs::exists(app_folder() + "/docker-compose.portalfs.yml.template"));
  EXPECT_FALSE(fs::exists(mnt() + "/apps/immich--database"));
  EXPECT_EQ(read_file(storage() + "/apps/immich/pgdata/keep"), "x") << "data kept without --purge";
}

TEST_F(Hooks, FreeshardBadTemplateChangesNothing) {
  ASSERT_NO_FATAL_FAILURE(start());
  fs::create_directories(app_folder());
  write_file(app_folder() + "/app_meta.json", R"({"name": "immich"})");
  write_file(app_folder() + "/docker-compose.yml.template",
             "services:\n  s:\n    volumes:\n      - \"{{ fs.app_dat }}/x:/x\"\n");
  const auto r = run({hook(), "install", app_folder()});
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find(":4:9: service s, volume 1"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(app_folder() + "/docker-compose.portalfs.yml.template"));
  EXPECT_FALSE(fs::exists(app_folder() + "/docker-compose.portalfs.yml.template.tmp"));
  EXPECT_EQ(ctl({"app", "list"}).out, "");
}

TEST_F(Hooks, DokkuTriggers) {
  ASSERT_NO_FATAL_FAILURE(start());
  write_file(dir_ / "web.json", R"({"name": "web", "data_dirs": ["/data"],
    "shared_dirs": [{"name": "own_media", "path": "/data/media", "access": "read"}]})");
  ASSERT_EQ(ctl({"app", "install", dir_ / "web.json"}).code, 0);

  EXPECT_EQ(run({trigger("install")}).code, 0);
  const std::string before = "--restart=on-failure:10 --env-file=/tmp/web.env";
  auto r = run({trigger("docker-args-deploy"), "web", "latest", "web", "1"}, before);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, before + " -v " + mnt() + "/apps/web/data/data:/data -v " + mnt() +
                       "/apps/web/shared/own_media:/data/media:ro");
  r = run({trigger("docker-args-run"), "web", "latest"}, before);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, before + " -v " + mnt() + "/apps/web/data/data:/data -v " + mnt() +
                       "/apps/web/shared/own_media:/data/media:ro");
  // An app portalfs does not know: the arguments pass through unchanged.
  r = run({trigger("docker-args-deploy"), "other", "latest"}, before);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, before);

  r = run({trigger("post-delete"), "web", "latest"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(ctl({"app", "list"}).out, "");
  EXPECT_EQ(run({trigger("post-delete"), "web"}).code, 0) << "deleting twice is fine";

  // Without the daemon: install and deploy fail loudly rather than start an app without data.
  ASSERT_EQ(ctl({"app", "install", dir_ / "web.json"}).code, 0);
  EXPECT_EQ(daemon_->stop(SIGTERM), 0);
  r = run({trigger("install")});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("portalfsd does not answer"), std::string::npos) << r.err;
  r = run({trigger("docker-args-deploy"), "web", "latest"}, before);
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("portalfs: web:"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace portalfs::testutil
