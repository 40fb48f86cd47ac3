// SPDX-License-Identifier: MIT
#pragma once

// The app the quota suites limit: notes, with two data dirs (/data, /cache) and the share
// own_media read-write as a third (/media), installed with the real portalctl.

#include <string>

#include "tests/testutil/daemon_fixture.hpp"

namespace portalfs::testutil {

class NotesApp : public DaemonFixture {
 protected:
  void install_notes() {
    write_file(dir_ / "notes.json", R"({"name": "notes", "data_dirs": ["/data", "/cache",
      {"path": "/media", "shared_dir": "own_media", "access": "read-write"}]})");
    auto r = ctl({"app", "install", dir_ / "notes.json"});
    ASSERT_EQ(r.code, 0) << r.err;
  }
  std::string data() { return mnt() + "/apps/notes/data/data"; }
  std::string cache() { return mnt() + "/apps/notes/data/cache"; }
  std::string media() { return mnt() + "/apps/notes/shared/own_media"; }
};

}  // namespace portalfs::testutil
