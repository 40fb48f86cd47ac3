// SPDX-License-Identifier: MIT
// The built portalctl on compose templates: validate --compose and render (offline verbs).

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "tests/testutil/temp_dir.hpp"

namespace {

namespace fs = std::filesystem;

struct Run {
  int code = -1;
  std::string out, err;
};

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

fs::path fixtures() { return fs::path(PORTALFS_TEST_SOURCE_DIR) / "tests" / "fixtures" / "compose"; }

// Runs portalctl with stdout and stderr sent to files of `dir` (the outputs are small).
Run portalctl(const portalfs::testutil::TempDir& dir, std::vector<std::string> args) {
  const std::string binary = std::string(PORTALFS_TEST_BUILD_DIR) + "/tools/portalctl";
  const fs::path out = fs::path(dir.path()) / "stdout", err = fs::path(dir.path()) / "stderr";
  std::vector<char*> argv{const_cast<char*>(binary.c_str())};
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  const pid_t pid = ::fork();
  if (pid == 0) {
    if (!std::freopen(out.c_str(), "w", stdout) || !std::freopen(err.c_str(), "w", stderr)) ::_exit(126);
    ::alarm(30);  // the test's own timeout for one run
    ::execv(binary.c_str(), argv.data());
    ::_exit(127);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status), slurp(out), slurp(err)};
}

TEST(ComposeCli, ValidateListsEveryVolumeOfEveryService) {
  portalfs::testutil::TempDir dir;
  const auto r = portalctl(dir, {"validate", "--compose", (fixtures() / "immich" / "docker-compose.yml.template").string()});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out,
            "immich: service immich-server: data dir upload at /usr/src/app/upload rw (as the image's user)\n"
            "immich: service immich-server: share pictures at /usr/src/app/upload/library rw (as the image's user)\n"
            "immich: service immich-machine-learning: data dir model-cache at /cache rw (as the image's user)\n"
            "immich: service redis: no volumes\n"
            "immich: service database: data dir pgdata at /var/lib/postgresql/data rw (as the image's user)\n");
}

TEST(ComposeCli, ValidateShapes) {
  portalfs::testutil::TempDir dir;
  const auto file = (fixtures() / "shapes" / "docker-compose.yml.template").string();
  const auto refused = portalctl(dir, {"validate", "--compose", file});
  EXPECT_EQ(refused.code, 2);
  EXPECT_EQ(refused.out, "");
  EXPECT_EQ(refused.err, file + ":46:9: service files, volume 2 (\"{{ fs.all_app_data }}:/data/app_data:rw,z\"): "
                                "{{ fs.all_app_data }} gives every app's data; allow it with --allow-all-app-data\n");
  const auto r = portalctl(dir, {"validate", "--compose", "--allow-all-app-data", "--name", "shapes",
                                 "--storage-root", "/srv/st", file});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out,
            "shapes: service web: data dir upload at /srv/upload rw (as 1000:1000)\n"
            "shapes: service web: share pictures at /srv/upload/library ro (as 1000:1000)\n"
            "shapes: service web: data dir upload/cache at /srv/cache rw (as 1000:1000)\n"
            "shapes: service web: installed files " + (fixtures() / "shapes" / "web.conf").string() +
                " at /etc/web.conf ro (as 1000:1000)\n"
            "shapes: service web: folder albums of share music /srv/st/shared/music/albums at /music ro (as 1000:1000)\n"
            "shapes: service web: /var/run/docker.sock at /var/run/docker.sock: not mediated by portalfs\n"
            "shapes: service web: web-cache at /var/cache/web: not mediated by portalfs\n"
            "shapes: service db: data dir pgdata at /var/lib/postgresql/data rw (as 999:999)\n"
            "shapes: service db: (anonymous volume) at /tmp/anonymous: not mediated by portalfs\n"
            "shapes: service files: every share (including shares created later) /srv/st/shared at /data/shared rw "
            "(as 1001:1001)\n"
            "shapes: service files: every app's data /srv/st/apps at /data/app_data rw (as 1001:1001)\n"
            "shapes: service files: the app's whole directory /srv/st/apps/shapes at /data/own rw (as 1001:1001)\n"
            "shapes: service worker: no volumes\n");
  // The operator's rules: every share read-only, pictures read-write, whatever the template says.
  const auto ruled = portalctl(dir, {"validate", "--compose", "--allow-all-app-data", "--share", "*=read", "--share",
                                     "pictures=read-write", file});
  ASSERT_EQ(ruled.code, 0) << ruled.err;
  EXPECT_NE(ruled.out.find("share pictures at /srv/upload/library rw"), std::string::npos) << ruled.out;
  EXPECT_NE(ruled.out.find("/shared at /data/shared ro"), std::string::npos) << ruled.out;
  EXPECT_NE(ruled.out.find("data dir upload at /srv/upload rw"), std::string::npos) << "rules are for shares only";
  const auto bad = portalctl(dir, {"validate", "--compose", "--share", "pictures=write", file});
  EXPECT_EQ(bad.code, 2);
  EXPECT_EQ(bad.err, "portalctl: --share: expected NAME=MODE, MODE one of read, read-write, create-only, no-delete, own-files (NAME a share, or * for every share), "
                     "got \"pictures=write\"; see portalctl --help\n");
}

TEST(ComposeCli, ValidateReportsUnmediatedPaths) {
  portalfs::testutil::TempDir dir;
  const auto r = portalctl(dir, {"validate", "--compose", (fixtures() / "dozzle" / "docker-compose.yml.template").string()});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("/var/run/docker.sock at /var/run/docker.sock: not mediated by portalfs\n"), std::string::npos)
      << r.out;
}

TEST(ComposeCli, BadTemplateIsOneLineExit2) {
  portalfs::testutil::TempDir dir;
  const fs::path bad = fs::path(dir.path()) / "docker-compose.yml.template";
  std::ofstream(bad) << "services:\n  web:\n    volumes:\n      - \"{{ fs.app_data }}/../x:/x\"\n";
  const auto r = portalctl(dir, {"validate", "--compose", "--name", "web", bad.string()});
  EXPECT_EQ(r.code, 2);
  EXPECT_EQ(r.err, bad.string() + ":4:9: service web, volume 1 (\"{{ fs.app_data }}/../x:/x\"): the sub-path must "
                                  "not have empty, \".\" or \"..\" segments\n");
  // render refuses the same, and writes nothing.
  const fs::path out = fs::path(dir.path()) / "out.yml";
  const auto render = portalctl(dir, {"render", "web", bad.string(), "-o", out.string()});
  EXPECT_EQ(render.code, 2);
  EXPECT_FALSE(fs::exists(out));
}

TEST(ComposeCli, RenderReplacesOnlyTheFsSources) {
  portalfs::testutil::TempDir dir;
  const fs::path tmpl = fixtures() / "immich" / "docker-compose.yml.template";
  const fs::path out = fs::path(dir.path()) / "docker-compose.yml";
  const auto r = portalctl(dir, {"render", "immich", tmpl.string(), "-o", out.string()});
  ASSERT_EQ(r.code, 0) << r.err;
  std::string expected = slurp(tmpl);
  auto replace = [&](const std::string& from, const std::string& to) {
    const auto at = expected.find(from);
    ASSERT_NE(at, std::string::npos) << from;
    expected.replace(at, from.size(), to);
  };
  replace("{{ fs.app_data }}/upload", "/run/portalfs/fs/apps/immich--immich-server/data/upload");
  replace("{{ fs.shared }}/pictures", "/run/portalfs/fs/apps/immich--immich-server/shared/pictures");
  replace("{{ fs.app_data }}/model-cache", "/run/portalfs/fs/apps/immich--immich-machine-learning/data/model-cache");
  replace("{{ fs.app_data }}/pgdata", "/run/portalfs/fs/apps/immich--database/data/pgdata");
  EXPECT_EQ(slurp(out), expected);
  // To stdout, with another mountpoint; nested data dirs keep their escaped view names.
  const auto baikal = portalctl(dir, {"render", "baikal", (fixtures() / "baikal" / "docker-compose.yml.template").string(),
                                      "--mountpoint", "/mnt/p"});
  ASSERT_EQ(baikal.code, 0) << baikal.err;
  EXPECT_NE(baikal.out.find("/mnt/p/apps/baikal--baikal/data/var%2Fwww%2Fbaikal%2Fconfig:/var/www/baikal/config"),
            std::string::npos)
      << baikal.out;
}

}  // namespace
