// SPDX-License-Identifier: MIT
// policy/compose: Freeshard's docker-compose.yml.template, parsed and rendered.

#include "policy/compose.hpp"

#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include <filesystem>
#include <regex>

#include "tests/testutil/process.hpp"
#include "tests/testutil/temp_dir.hpp"

namespace portalfs::policy {
namespace {

namespace fs = std::filesystem;

fs::path fixtures_dir() { return fs::path(testutil::source_dir()) / "tests" / "fixtures" / "compose"; }

std::string template_of(const fs::path& app_dir) {
  return testutil::read_file((app_dir / "docker-compose.yml.template").string());
}

std::string error_of(std::string_view text, std::string_view source = "t.yml") {
  try {
    parse_compose(text, source);
  } catch (const ManifestError& e) {
    return e.what();
  }
  return "(accepted)";
}

const ComposeService& service(const ComposeApp& app, const std::string& name) {
  for (const auto& s : app.services) {
    if (s.name == name) return s;
  }
  throw std::runtime_error("no service " + name);
}

// ---------------------------------------------------------------------------------------------
// Every shape, from the hand-written fixture.

TEST(Compose, ShapesFixture) {
  const auto dir = fixtures_dir() / "shapes";
  const ComposeApp app = parse_compose(template_of(dir), "shapes");
  ASSERT_EQ(app.services.size(), 4u);
  EXPECT_EQ(app.services[0].name, "web");  // document order
  EXPECT_EQ(app.services[3].name, "worker");

  const auto& web = service(app, "web");
  EXPECT_EQ(web.user, (Owner{1000, 1000}));
  ASSERT_EQ(web.volumes.size(), 7u);
  const auto& upload = web.volumes[0];
  EXPECT_TRUE(upload.mediated);
  EXPECT_EQ(upload.var, FsVar::app_data);
  EXPECT_EQ(upload.sub, "upload");
  EXPECT_EQ(upload.target, "/srv/upload");
  EXPECT_EQ(upload.access, Access::read_write);
  EXPECT_EQ(upload.line, 13u);
  const auto& pictures = web.volumes[1];  // single quotes, no spaces inside the braces, :ro
  EXPECT_EQ(pictures.var, FsVar::shared);
  EXPECT_EQ(pictures.sub, "pictures");
  EXPECT_EQ(pictures.target, "/srv/upload/library");
  EXPECT_EQ(pictures.access, Access::read);
  const auto& cache = web.volumes[2];  // unquoted, several spaces, nested in upload
  EXPECT_TRUE(cache.mediated);
  EXPECT_EQ(cache.sub, "upload/cache");
  EXPECT_EQ(web.volumes[3].var, FsVar::installation_dir);
  EXPECT_EQ(web.volumes[3].sub, "web.conf");
  const auto& socket = web.volumes[4];
  EXPECT_FALSE(socket.mediated);
  EXPECT_EQ(socket.host_source, "/var/run/docker.sock");
  EXPECT_EQ(socket.access, Access::read);
  const auto& music = web.volumes[5];  // long syntax
  EXPECT_TRUE(music.mediated);
  EXPECT_EQ(music.var, FsVar::shared);
  EXPECT_EQ(music.sub, "music/albums");
  EXPECT_EQ(music.target, "/music");
  EXPECT_EQ(music.access, Access::read);
  EXPECT_FALSE(web.volumes[6].mediated);  // a named volume
  EXPECT_EQ(web.volumes[6].host_source, "web-cache");

  const auto& db = service(app, "db");
  EXPECT_EQ(db.user, (Owner{999, 999}));
  ASSERT_EQ(db.volumes.size(), 2u);
  EXPECT_EQ(db.volumes[0].sub, "pgdata");  // trailing '/' dropped
  EXPECT_EQ(db.volumes[0].target, "/var/lib/postgresql/data");
  EXPECT_FALSE(db.volumes[1].mediated);  // anonymous
  EXPECT_EQ(db.volumes[1].host_source, "");
  EXPECT_EQ(db.volumes[1].target, "/tmp/anonymous");

  const auto& files = service(app, "files");
  EXPECT_EQ(files.user, (Owner{1001, 1001}));
  ASSERT_EQ(files.volumes.size(), 3u);
  EXPECT_EQ(files.volumes[0].var, FsVar::shared);
  EXPECT_EQ(files.volumes[0].sub, "");
  EXPECT_EQ(files.volumes[1].var, FsVar::all_app_data);
  EXPECT_EQ(files.volumes[1].access, Access::read_write);  // "rw,z"
  EXPECT_EQ(files.volumes[2].var, FsVar::app_data);
  EXPECT_EQ(files.volumes[2].sub, "");

  const auto& worker = service(app, "worker");
  EXPECT_EQ(worker.user, std::nullopt);  // `user: node` is not numeric
  EXPECT_TRUE(worker.volumes.empty());
}

TEST(Compose, RenderChangesOnlyTheMediatedSources) {
  const std::string text = template_of(fixtures_dir() / "shapes");
  const ComposeApp app = parse_compose(text, "shapes");
  // Replacing each source by its own bytes gives the template back, byte for byte.
  EXPECT_EQ(render_compose(text, app,
                           [&](const ComposeService&, const ComposeVolume& v) {
                             return text.substr(v.source_begin, v.source_end - v.source_begin);
                           }),
            text);
  const std::string out = render_compose(text, app, [](const ComposeService& s, const ComposeVolume& v) {
    return "/V/" + s.name + "/" + std::to_string(v.index);
  });
  EXPECT_NE(out.find("      - \"/V/web/0:/srv/upload\"\n"), std::string::npos) << out;
  EXPECT_NE(out.find("      - '/V/web/1:/srv/upload/library:ro'\n"), std::string::npos);
  EXPECT_NE(out.find("      - /V/web/2:/srv/cache\n"), std::string::npos);
  EXPECT_NE(out.find("        source: \"/V/web/5\"\n"), std::string::npos);
  EXPECT_NE(out.find("        source: '/V/db/0'\n"), std::string::npos);
  EXPECT_NE(out.find("      - \"/V/files/1:/data/app_data:rw,z\"\n"), std::string::npos);
  // Everything else stays: comments, ${...}, other {{ }}, the unmediated volumes.
  for (const char* kept : {"# Every shape portalfs reads", "${WEB_VERSION:-1.2}", "{{ portal.domain }}",
                           "/var/run/docker.sock:/var/run/docker.sock:ro", "source: web-cache",
                           "user: node"}) {
    EXPECT_NE(out.find(kept), std::string::npos) << kept;
  }
  EXPECT_EQ(out.find("fs."), std::string::npos);
}

// ---------------------------------------------------------------------------------------------
// Bad input: one line naming the place.

TEST(Compose, BadYamlGivesFileLineColumn) {
  const std::string e = error_of("services:\n  web:\n    image: [a\n    volumes: x\n", "bad.yml");
  EXPECT_TRUE(std::regex_match(e, std::regex(R"(bad\.yml:[0-9]+:[0-9]+: [^\n]+)"))) << e;
  EXPECT_EQ(error_of("services:\n\tweb: {}\n", "tab.yml").rfind("tab.yml:2:", 0), 0u) << error_of("services:\n\tweb: {}\n", "tab.yml");
}

TEST(Compose, BadVolumesNameServiceAndVolume) {
  EXPECT_EQ(error_of("services:\n  web:\n    volumes:\n      - \"{{ fs.app_dta }}/x:/x\"\n"),
            "t.yml:4:9: service web, volume 1 (\"{{ fs.app_dta }}/x:/x\"): unknown variable `fs.app_dta` "
            "(expected fs.app_data, fs.shared, fs.all_app_data or fs.installation_dir)");
  EXPECT_EQ(error_of("services:\n  web:\n    volumes:\n      - /a:/a\n      - \"{{ fs.app_data }}/x/../../etc:/x\"\n"),
            "t.yml:5:9: service web, volume 2 (\"{{ fs.app_data }}/x/../../etc:/x\"): the sub-path must not "
            "have empty, \".\" or \"..\" segments");
  EXPECT_EQ(error_of("services:\n  web:\n    volumes:\n      - \"/srv/{{ fs.app_data }}:/x\"\n"),
            "t.yml:4:9: service web, volume 1 (\"/srv/{{ fs.app_data }}:/x\"): an {{ fs.* }} variable must "
            "start the source");
  EXPECT_EQ(error_of("services:\n  web:\n    volumes:\n      - \"{{ fs.app_data }}data:/x\"\n"),
            "t.yml:4:9: service web, volume 1 (\"{{ fs.app_data }}data:/x\"): expected '/' after the variable, "
            "got \"data\"");
  EXPECT_EQ(error_of("services:\n  web:\n    volumes:\n      - \"{{ fs.shared }}/Bad Name:/x\"\n"),
            "t.yml:4:9: service web, volume 1 (\"{{ fs.shared }}/Bad Name:/x\"): expected a share name "
            "matching [a-z0-9_][a-z0-9_-]{0,62}");
  EXPECT_EQ(error_of("services:\n  web:\n    volumes:\n      - \"{{ fs.app_data }}/x:/proc/x\"\n"),
            "t.yml:4:9: service web, volume 1 (\"{{ fs.app_data }}/x:/proc/x\"): target: expected a path "
            "outside /proc, /sys and /dev");
  EXPECT_EQ(error_of("services:\n  web:\n    volumes:\n      - type: volume\n        source: \"{{ fs.app_data }}\"\n        target: /x\n"),
            "t.yml:4:9: service web, volume 1 (\"{{ fs.app_data }} -> /x\"): an {{ fs.* }} source needs "
            "`type: bind`, got `type: volume`");
  EXPECT_EQ(error_of("services:\n  web:\n    volumes:\n      - type: bind\n        source: \"{{ fs.app_data }}\"\n        target: /x\n        read_only: maybe\n"),
            "t.yml:4:9: service web, volume 1 (\"{{ fs.app_data }} -> /x\"): expected `read_only` to be true or false");
  EXPECT_EQ(error_of("services:\n  web:\n    volumes: /x\n"), "t.yml:3:14: service web: expected `volumes` to be a list");
  EXPECT_EQ(error_of("version: '3'\n"), "t.yml: expected a `services` mapping");
  EXPECT_EQ(error_of("- a\n"), "t.yml: expected a mapping at the top of the document");
}

TEST(Compose, NoStorageIsFine) {
  const ComposeApp app = parse_compose("services:\n  web:\n    image: x\n  empty:\n", "t.yml");
  ASSERT_EQ(app.services.size(), 2u);
  EXPECT_TRUE(app.services[0].volumes.empty());
}

// ---------------------------------------------------------------------------------------------
// The store's apps: each template parses and renders, and the rendered file (its other {{ }}
// filled with fixed values) has the same services, images, environment and networks.

std::string fill_jinja(std::string text) {
  static const std::regex jinja(R"(\{\{[^}\n]*\}\})");
  return std::regex_replace(text, jinja, "fixed");
}

std::string dump(const YAML::Node& n) { return n.IsDefined() ? YAML::Dump(n) : "(none)"; }
std::size_t count(const YAML::Node& n) { return n.IsDefined() ? n.size() : 0; }

int check_store(const fs::path& dir) {
  int apps = 0;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (!fs::exists(entry.path() / "docker-compose.yml.template")) continue;
    SCOPED_TRACE(entry.path().string());
    const std::string text = template_of(entry.path());
    ComposeApp app;
    try {
      app = parse_compose(text, entry.path().string());
    } catch (const ManifestError& e) {
      ADD_FAILURE() << e.what();
      continue;
    }
    const std::string out = render_compose(text, app, [](const ComposeService& s, const ComposeVolume& v) {
      return "/run/portalfs/fs/apps/x--" + s.name + "/" + std::to_string(v.index);
    });
    EXPECT_FALSE(std::regex_search(out, std::regex(R"(\{\{\s*fs\.)"))) << "an {{ fs.* }} is left";
    const YAML::Node before = YAML::Load(fill_jinja(text));
    const YAML::Node after = YAML::Load(fill_jinja(out));
    EXPECT_EQ(dump(before["networks"]), dump(after["networks"]));
    EXPECT_EQ(before["services"].size(), after["services"].size());
    for (const auto& item : before["services"]) {
      const auto name = item.first.as<std::string>();
      const YAML::Node rendered = after["services"][name];
      if (!rendered.IsDefined()) {
        ADD_FAILURE() << name << " is missing from the rendered file";
        continue;
      }
      for (const char* key : {"image", "environment", "networks", "user", "env_file"}) {
        EXPECT_EQ(dump(item.second[key]), dump(rendered[key])) << name << " " << key;
      }
      EXPECT_EQ(count(item.second["volumes"]), count(rendered["volumes"])) << name;
    }
    ++apps;
  }
  return apps;
}

TEST(ComposeStore, RepositoryFixtures) { EXPECT_EQ(check_store(fixtures_dir()), 6); }

TEST(ComposeStore, OptionalFreeshardStoreWhenPresent) {
  if (const auto dir = testutil::optional_corpus("freeshard-apps")) {
    EXPECT_EQ(check_store(*dir), testutil::count_compose_apps(*dir));
  }
}

TEST(ComposeStore, ImmichShape) {
  const ComposeApp app = parse_compose(template_of(fixtures_dir() / "immich"), "immich");
  const auto& server = service(app, "immich-server");
  ASSERT_EQ(server.volumes.size(), 2u);
  EXPECT_EQ(server.volumes[0].sub, "upload");
  EXPECT_EQ(server.volumes[1].var, FsVar::shared);
  EXPECT_EQ(server.volumes[1].sub, "pictures");
  EXPECT_EQ(server.volumes[1].target, "/usr/src/app/upload/library");  // inside upload's mount
  EXPECT_EQ(service(app, "database").volumes.at(0).sub, "pgdata");
  EXPECT_TRUE(service(app, "redis").volumes.empty());
}

}  // namespace
}  // namespace portalfs::policy
