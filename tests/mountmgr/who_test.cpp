// SPDX-License-Identifier: MIT
// portalctl who, below the daemon: a path in a view or below the storage root to its backing
// file (pure, from the state), the provenance xattrs read from it without following a symlink,
// the views that show it, and the text answer.

#include "mountmgr/who.hpp"

#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <gmock/gmock.h>
#include <memory>
#include <gtest/gtest.h>
#include <stdexcept>

#include "mountmgr/manager.hpp"
#include "mountmgr/paths.hpp"
#include "policy/provenance.hpp"
#include "tests/testutil/temp_dir.hpp"

namespace portalfs::mountmgr {
namespace {

namespace fs = std::filesystem;
using policy::Access;
using policy::Grant;
using policy::GrantKind;
using testutil::TempDir;
using testutil::write_file;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

// alpha: data dirs "data" and "data/cache", share music read-write; beta: share music read,
// share docs (revoked), a storage mount of /srv/media.
State two_apps() {
  State state;
  state.shares["music"] = {};
  state.shares["docs"] = {};
  AppRecord alpha;
  alpha.grants = {{GrantKind::data, "data", "/data", Access::read_write, std::nullopt},
                  {GrantKind::data, "data/cache", "/data/cache", Access::read_write, std::nullopt},
                  {GrantKind::shared, "music", "/music", Access::read_write, std::nullopt}};
  AppRecord beta;
  beta.grants = {{GrantKind::shared, "music", "/music", Access::read, std::nullopt},
                 {GrantKind::shared, "docs", "/docs", Access::read_write, std::nullopt}};
  beta.revoked = {"docs"};
  beta.storage_mounts = {{"/srv/media", "/media", true}};
  state.apps["alpha"] = alpha;
  state.apps["beta"] = beta;
  return state;
}

ManagerConfig config_at(const std::string& root, const std::string& mnt) {
  ManagerConfig config;
  config.storage_root = root;
  config.mountpoint = mnt;
  return config;
}

class Locate : public ::testing::Test {
 protected:
  State state = two_apps();
  ManagerConfig config = config_at("/srv/storage", "/run/pfs");

  BackingFile at(std::string_view path) { return locate_backing(state, config, path); }
  // The message of the exception of type E that locating `path` throws ("" if none).
  template <typename E>
  std::string error(std::string_view path) {
    try {
      (void)at(path);
    } catch (const E& e) {
      return e.what();
    }
    return "";
  }
};

TEST_F(Locate, AViewPathIsTheFileInItsBackingDirectory) {
  EXPECT_EQ(at("/run/pfs/apps/beta/shared/music/a/b.mp3"),
            (BackingFile{"/srv/storage", {"shared", "music", "a", "b.mp3"}}));
  EXPECT_EQ(at("/run/pfs/apps/alpha/data/data/notes.txt"),
            (BackingFile{"/srv/storage", {"apps", "alpha", "data", "notes.txt"}}));
  // A nested data dir's view name writes '/' as %2F; it nests on disk.
  EXPECT_EQ(at("/run/pfs/apps/alpha/data/data%2Fcache/x"),
            (BackingFile{"/srv/storage", {"apps", "alpha", "data", "cache", "x"}}));
  // The view directory itself.
  EXPECT_EQ(at("/run/pfs/apps/alpha/shared/music"), (BackingFile{"/srv/storage", {"shared", "music"}}));
  // A storage mount's view is reached from "/", as the filesystem reaches it.
  EXPECT_EQ(at("/run/pfs/apps/beta/host/%2Fsrv%2Fmedia/film.mkv"), (BackingFile{"/", {"srv", "media", "film.mkv"}}));
}

TEST_F(Locate, AViewOfAFreeshardTreeIsBelowItsAppsDir) {
  config.apps_dir = "app_data";
  EXPECT_EQ(at("/run/pfs/apps/alpha/data/data/n"), (BackingFile{"/srv/storage", {"app_data", "alpha", "data", "n"}}));
}

TEST_F(Locate, AHostPathIsTheFileBelowTheStorageRoot) {
  EXPECT_EQ(at("/srv/storage/shared/music/a/b.mp3"), (BackingFile{"/srv/storage", {"shared", "music", "a", "b.mp3"}}));
  EXPECT_EQ(at("/srv/storage/apps/alpha/data/notes.txt"),
            (BackingFile{"/srv/storage", {"apps", "alpha", "data", "notes.txt"}}));
  EXPECT_EQ(at("/srv/storage"), (BackingFile{"/srv/storage", {}}));
  EXPECT_EQ(at("/srv/storage/"), (BackingFile{"/srv/storage", {}}));
}

TEST_F(Locate, DotsAndDoubledSlashesAreNormalisedAway) {
  EXPECT_EQ(at("/srv/storage//shared/./music/a/../b.mp3"), (BackingFile{"/srv/storage", {"shared", "music", "b.mp3"}}));
  EXPECT_EQ(at("/run/pfs/apps/alpha/shared/music/../../../beta/shared/music/x"),
            (BackingFile{"/srv/storage", {"shared", "music", "x"}}));
  // Out of one share into another below the root: judged by where it leads.
  EXPECT_EQ(at("/srv/storage/shared/music/../docs/x"), (BackingFile{"/srv/storage", {"shared", "docs", "x"}}));
}

TEST_F(Locate, DotDotNeverEscapesTheRootOrTheMountpoint) {
  EXPECT_EQ(error<std::invalid_argument>("/srv/storage/shared/music/../../../../etc/passwd"),
            "/etc/passwd: not below the mountpoint /run/pfs or the storage root /srv/storage; expected a file "
            "in a view or in the storage root");
  EXPECT_THAT(error<std::invalid_argument>("/run/pfs/apps/alpha/shared/music/../../../../../srv/x"),
              HasSubstr("/srv/x: not below the mountpoint"));
  // Above "/" is "/".
  EXPECT_THAT(error<std::invalid_argument>("/../../srv/storage/../../etc"), HasSubstr("/etc: not below"));
  EXPECT_EQ(at("/../../srv/storage/shared/music"), (BackingFile{"/srv/storage", {"shared", "music"}}));
}

TEST_F(Locate, OutsideIsBadInput) {
  EXPECT_EQ(error<std::invalid_argument>("/etc/passwd"),
            "/etc/passwd: not below the mountpoint /run/pfs or the storage root /srv/storage; expected a file "
            "in a view or in the storage root");
  // A sibling whose name starts alike is not below.
  EXPECT_THAT(error<std::invalid_argument>("/srv/storage2/shared/music/x"), HasSubstr("not below"));
  EXPECT_THAT(error<std::invalid_argument>("/run/pfsx/apps/alpha/shared/music"), HasSubstr("not below"));
  // A storage mount's host path is reached through its view, not as a host path.
  EXPECT_THAT(error<std::invalid_argument>("/srv/media/film.mkv"), HasSubstr("not below"));
  EXPECT_EQ(error<std::invalid_argument>("shared/music/x"), "shared/music/x: expected an absolute path");
  EXPECT_EQ(error<std::invalid_argument>(""), ": expected an absolute path");
  EXPECT_EQ(error<std::invalid_argument>(std::string_view("/srv/storage/a\0b", 16)), "expected a path without NUL");
}

TEST_F(Locate, TheDirectoriesAboveTheViewsAreBadInput) {
  for (const char* path : {"/run/pfs", "/run/pfs/apps", "/run/pfs/apps/alpha", "/run/pfs/apps/alpha/shared",
                           "/run/pfs/other/alpha/shared/music"}) {
    EXPECT_EQ(error<std::invalid_argument>(path),
              std::string(path) + ": not in a view (a directory portalfs makes above them); expected "
                                  "/run/pfs/apps/APP/data|shared|host/VIEW/...");
  }
}

TEST_F(Locate, AViewThatDoesNotExistIsARuntimeFailure) {
  EXPECT_EQ(error<std::runtime_error>("/run/pfs/apps/gamma/shared/music/x"),
            "/run/pfs/apps/gamma/shared/music/x: no such view: app gamma is not installed");
  EXPECT_EQ(error<std::runtime_error>("/run/pfs/apps/alpha/shared/docs/x"),
            "/run/pfs/apps/alpha/shared/docs/x: no such view: app alpha has no view shared/docs");
  // Revoked: not served.
  EXPECT_EQ(error<std::runtime_error>("/run/pfs/apps/beta/shared/docs"),
            "/run/pfs/apps/beta/shared/docs: no such view: app beta has no view shared/docs");
  EXPECT_THAT(error<std::runtime_error>("/run/pfs/apps/alpha/data/music/x"), HasSubstr("has no view data/music"));
  EXPECT_THAT(error<std::runtime_error>("/run/pfs/apps/alpha/other/music/x"), HasSubstr("has no view other/music"));
}

TEST_F(Locate, TheViewsThatShowAFile) {
  EXPECT_THAT(views_showing(state, config, at("/srv/storage/shared/music/a.mp3")),
              ElementsAre(ShownIn{"alpha", "/run/pfs/apps/alpha/shared/music/a.mp3", "read-write"},
                          ShownIn{"beta", "/run/pfs/apps/beta/shared/music/a.mp3", "read"}));
  // Nested data dirs: both views show what is below the inner one.
  EXPECT_THAT(views_showing(state, config, at("/run/pfs/apps/alpha/data/data%2Fcache/x")),
              ElementsAre(ShownIn{"alpha", "/run/pfs/apps/alpha/data/data/cache/x", "read-write"},
                          ShownIn{"alpha", "/run/pfs/apps/alpha/data/data%2Fcache/x", "read-write"}));
  EXPECT_THAT(views_showing(state, config, at("/srv/storage/shared/music")),
              ElementsAre(ShownIn{"alpha", "/run/pfs/apps/alpha/shared/music", "read-write"},
                          ShownIn{"beta", "/run/pfs/apps/beta/shared/music", "read"}));
  // A revoked share's files are in no view; nor is the root.
  EXPECT_TRUE(views_showing(state, config, at("/srv/storage/shared/docs/x")).empty());
  EXPECT_TRUE(views_showing(state, config, at("/srv/storage")).empty());
}

TEST(NormaliseLexically, DropsDotsAndEmptySegments) {
  EXPECT_EQ(normalise_lexically("/"), "/");
  EXPECT_EQ(normalise_lexically("//"), "/");
  EXPECT_EQ(normalise_lexically("/a/./b/../c//"), "/a/c");
  EXPECT_EQ(normalise_lexically("/.."), "/");
  EXPECT_EQ(normalise_lexically("/a/../../b"), "/b");
  EXPECT_EQ(normalise_lexically("/a/..b/.c"), "/a/..b/.c");
}

// ---- reading the backing file ---------------------------------------------------------------

class ReadProvenance : public ::testing::Test {
 protected:
  void SetUp() override {
    // trusted.* xattrs are root's.
    if (::geteuid() != 0) GTEST_SKIP() << "needs root (trusted.* xattrs)";
    fs::create_directories(root + "/shared/music/sub");
    fs::create_directories(tmp / "outside");
    write_file(root + "/shared/music/sub/song.mp3", "x");
    write_file(tmp / "outside/secret", "s");
  }

  static void set(const std::string& path, const char* name, const std::string& value) {
    ASSERT_EQ(::lsetxattr(path.c_str(), name, value.data(), value.size(), 0), 0) << path << ": " << std::strerror(errno);
  }

  // The message of the runtime_error read_provenance throws ("" if none).
  std::string error(const BackingFile& file) {
    try {
      (void)read_provenance(file, "/asked");
    } catch (const std::runtime_error& e) {
      return e.what();
    }
    return "";
  }

  TempDir tmp;
  std::string root = tmp / "storage";
};

TEST_F(ReadProvenance, ReadsBothXattrs) {
  set(root + "/shared/music/sub/song.mp3", policy::kCreatedByXattr, "alpha");
  set(root + "/shared/music/sub/song.mp3", policy::kChangedByXattr, "beta");
  const auto p = read_provenance({root, {"shared", "music", "sub", "song.mp3"}}, "/asked");
  EXPECT_EQ(p.type, "file");
  EXPECT_EQ(p.created_by, "alpha");
  EXPECT_EQ(p.changed_by, "beta");
}

TEST_F(ReadProvenance, AbsentXattrsAreNoApp) {
  const auto p = read_provenance({root, {"shared", "music", "sub"}}, "/asked");
  EXPECT_EQ(p.type, "directory");
  EXPECT_EQ(p.created_by, std::nullopt);
  EXPECT_EQ(p.changed_by, std::nullopt);
  set(root, policy::kCreatedByXattr, "alpha");
  EXPECT_EQ(read_provenance({root, {}}, "/asked").created_by, "alpha");  // the root itself
}

TEST_F(ReadProvenance, ALongValueIsReadWhole) {
  const std::string long_id(200, 'a');
  set(root + "/shared/music/sub/song.mp3", policy::kCreatedByXattr, long_id);
  EXPECT_EQ(read_provenance({root, {"shared", "music", "sub", "song.mp3"}}, "/asked").created_by, long_id);
}

TEST_F(ReadProvenance, NoSuchFileNamesTheAskedPathAndTheBacking) {
  EXPECT_EQ(error({root, {"shared", "music", "sub", "nope"}}),
            "/asked: no such file or directory (backing " + root + "/shared/music/sub/nope)");
  EXPECT_EQ(error({root, {"shared", "nope", "sub", "x"}}),
            "/asked: no such file or directory (backing " + root + "/shared/nope/sub/x)");
  EXPECT_EQ(error({root, {"shared", "music", "sub", "song.mp3", "x"}}),
            "/asked: " + root + "/shared/music/sub/song.mp3: is not a directory");
}

// An app may plant a link in its share: a component on the way is never followed, and the last
// one is the link itself, whose own provenance is read.
TEST_F(ReadProvenance, ASymlinkIsNeverFollowed) {
  set(tmp / "outside/secret", policy::kCreatedByXattr, "outsider");
  set(tmp / "outside", policy::kCreatedByXattr, "outsider");
  fs::create_symlink(tmp / "outside", root + "/shared/music/link");
  EXPECT_EQ(error({root, {"shared", "music", "link", "secret"}}),
            "/asked: " + root + "/shared/music/link: is a symbolic link; refusing to follow it");
  const auto p = read_provenance({root, {"shared", "music", "link"}}, "/asked");
  EXPECT_EQ(p.type, "symlink");
  EXPECT_EQ(p.created_by, std::nullopt);
  set(root + "/shared/music/link", policy::kCreatedByXattr, "alpha");
  EXPECT_EQ(read_provenance({root, {"shared", "music", "link"}}, "/asked").created_by, "alpha");
  EXPECT_EQ(read_provenance({tmp / "outside", {"secret"}}, "/asked").created_by, "outsider");  // still there
}

TEST_F(ReadProvenance, ABadComponentIsRefused) {
  EXPECT_THAT(error({root, {"shared", "..", "x"}}), HasSubstr("bad path component"));
  EXPECT_THAT(error({root, {"shared", ".."}}), HasSubstr("bad path component"));
}

// ---- the text answer ----------------------------------------------------------------------

TEST(WhoLine, SaysWhoCreatedAndWhoChanged) {
  EXPECT_EQ(who_line("/p", {"file", "alpha", "beta"}), "/p: created by alpha, last changed by beta\n");
  EXPECT_EQ(who_line("/p", {"file", "alpha", std::nullopt}), "/p: created by alpha, not changed by another app\n");
  EXPECT_EQ(who_line("/p", {"file", std::nullopt, "beta"}), "/p: no app recorded as its creator, last changed by beta\n");
  EXPECT_EQ(who_line("/p", {"file", std::nullopt, std::nullopt}),
            "/p: no app recorded as its creator, no change by an app recorded\n");
  // Whatever is on disk, one line.
  EXPECT_EQ(who_line("/p\n", {"file", "a\nb", std::nullopt}), "/p\\n: created by a\\nb, not changed by another app\n");
}

// ---- the verb -----------------------------------------------------------------------------

// Manager::handle("who") over real directories. The storage root and the mountpoint are
// configured through a symlink (alias -> real), as /var/lib may be on another disk: a path
// spelled the real way (getcwd's, for portalctl's relative paths) names the same files.
class WhoVerb : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root (trusted.* xattrs)";
    fs::create_directories(tmp / "real/mnt");
    fs::create_symlink(tmp / "real", tmp / "alias");
    ManagerConfig config;
    config.storage_root = alias + "/storage";
    config.state_dir = tmp / "state";
    config.mountpoint = alias + "/mnt";
    mgr = std::make_unique<Manager>(config, [](const policy::ViewSpecs&, const policy::ViewSpecs&) {});
    ASSERT_TRUE(call("share.create", {{"name", "music"}}).value("ok", false));
    for (const char* app : {"alpha", "beta"}) {
      const nlohmann::json manifest = {
          {"name", app}, {"v", "1"}, {"shared_dirs", {{{"name", "music"}, {"path", "/music"}, {"access", "read-write"}}}}};
      const auto r = call("app.install", {{"manifest", manifest.dump()}, {"source", "app.json"}});
      ASSERT_TRUE(r.value("ok", false)) << r.dump();
    }
    write_file(alias + "/storage/shared/music/song.mp3", "x");
    song = alias + "/storage/shared/music/song.mp3";
  }

  nlohmann::json call(const std::string& verb, nlohmann::json args, bool as_json = false) {
    return mgr->handle({{"verb", verb}, {"format", as_json ? "json" : "text"}, {"args", std::move(args)}});
  }
  nlohmann::json who(const std::string& path, bool as_json = false) { return call("who", {{"path", path}}, as_json); }

  TempDir tmp;
  std::string alias = tmp / "alias";
  std::string song;
  std::unique_ptr<Manager> mgr;
};

TEST_F(WhoVerb, TextThroughAViewAndOnTheHost) {
  ASSERT_EQ(::setxattr(song.c_str(), policy::kCreatedByXattr, "alpha", 5, 0), 0);
  const std::string view = alias + "/mnt/apps/beta/shared/music/song.mp3";
  EXPECT_EQ(who(view), (nlohmann::json{{"ok", true}, {"output", view + ": created by alpha, not changed by another app\n"}}));
  ASSERT_EQ(::setxattr(song.c_str(), policy::kChangedByXattr, "beta", 4, 0), 0);
  EXPECT_EQ(who(song)["output"], song + ": created by alpha, last changed by beta\n");
  // Spelled the real way, or with dots: answered with the configured spelling.
  EXPECT_EQ(who(tmp / "real/storage/shared/music/./song.mp3")["output"], song + ": created by alpha, last changed by beta\n");
  EXPECT_EQ(who(tmp / "real/mnt/apps/beta/shared/music/../music/song.mp3")["output"],
            view + ": created by alpha, last changed by beta\n");
}

TEST_F(WhoVerb, Json) {
  ASSERT_EQ(::setxattr(song.c_str(), policy::kCreatedByXattr, "alpha", 5, 0), 0);
  const auto r = who(alias + "/mnt/apps/alpha/shared/music/song.mp3", true);
  ASSERT_TRUE(r.value("ok", false)) << r.dump();
  EXPECT_EQ(nlohmann::json::parse(r["output"].get<std::string>()),
            (nlohmann::json{{"path", alias + "/mnt/apps/alpha/shared/music/song.mp3"},
                            {"backing", song},
                            {"type", "file"},
                            {"created_by", "alpha"},
                            {"changed_by", nullptr},
                            {"views",
                             {{{"app", "alpha"}, {"path", alias + "/mnt/apps/alpha/shared/music/song.mp3"}, {"access", "read-write"}},
                              {{"app", "beta"}, {"path", alias + "/mnt/apps/beta/shared/music/song.mp3"}, {"access", "read-write"}}}}}));
  // Bytes that are not UTF-8 in an id still make valid JSON.
  ASSERT_EQ(::setxattr(song.c_str(), policy::kChangedByXattr, "b\xff", 2, 0), 0);
  const auto bad = who(song, true);
  ASSERT_TRUE(bad.value("ok", false)) << bad.dump();
  EXPECT_EQ(nlohmann::json::parse(bad["output"].get<std::string>())["changed_by"], "b\xEF\xBF\xBD");
}

TEST_F(WhoVerb, ErrorsAreOneLineWithTheirCode) {
  const auto error = [&](const std::string& path) {
    const auto r = who(path);
    EXPECT_FALSE(r.value("ok", true)) << r.dump();
    return std::to_string(r.value("code", 0)) + " " + r.value("error", "");
  };
  EXPECT_EQ(error("/etc/passwd"), "2 who: /etc/passwd: not below the mountpoint " + alias + "/mnt or the storage root " +
                                      alias + "/storage; expected a file in a view or in the storage root");
  EXPECT_EQ(error("relative"), "2 who: relative: expected an absolute path");
  EXPECT_EQ(error(alias + "/mnt/apps/alpha"),
            "2 who: " + alias + "/mnt/apps/alpha: not in a view (a directory portalfs makes above them); expected " +
                alias + "/mnt/apps/APP/data|shared|host/VIEW/...");
  EXPECT_EQ(error(alias + "/mnt/apps/gamma/shared/music/x"),
            "1 who: " + alias + "/mnt/apps/gamma/shared/music/x: no such view: app gamma is not installed");
  EXPECT_EQ(error(alias + "/mnt/apps/alpha/shared/music/nope"), "1 who: " + alias +
                                                                   "/mnt/apps/alpha/shared/music/nope: no such file or "
                                                                   "directory (backing " +
                                                                   alias + "/storage/shared/music/nope)");
  EXPECT_EQ(error(alias + "/mnt/apps/alpha/shared/music/a\nb"),
            "1 who: " + alias + "/mnt/apps/alpha/shared/music/a\\nb: no such file or directory (backing " + alias +
                "/storage/shared/music/a\\nb)");
}

}  // namespace
}  // namespace portalfs::mountmgr
