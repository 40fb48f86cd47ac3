// SPDX-License-Identifier: MIT
#include "mountmgr/who.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

#include "common/beneath.hpp"
#include "common/escape.hpp"
#include "common/unique_fd.hpp"
#include "mountmgr/paths.hpp"
#include "mountmgr/views.hpp"
#include "policy/provenance.hpp"

namespace portalfs::mountmgr {
namespace {

// The components of `path` below `base` (both normalised, `path` within `base`).
std::vector<std::string> below(const std::string& path, const std::string& base) {
  std::string_view rest(path);
  rest.remove_prefix(base == "/" ? 1 : base.size());
  if (rest.starts_with('/')) rest.remove_prefix(1);
  return common::split_components(rest);
}

// `backing` below `anchor` ("" = "/"), as the components to walk. The anchor and the backing
// come from the configuration and the state, whose names were checked when they entered it;
// an empty segment (a doubled '/') is no component.
BackingFile split_backing(const std::string& anchor, const std::string& backing) {
  BackingFile file{anchor.empty() ? "/" : anchor, {}};
  const std::string normal_anchor = normalise_host_path(file.anchor);
  const std::string normal_backing = normalise_host_path(backing);
  if (!path_within(normal_backing, normal_anchor)) {
    throw std::logic_error("view backing " + backing + " is not below its anchor " + file.anchor);
  }
  for (auto& c : below(normal_backing, normal_anchor)) {
    if (!c.empty()) file.components.push_back(std::move(c));
  }
  return file;
}

// <mountpoint>/apps/<app>/<kind>/<view dir>/<rest...>: the file in the view's backing directory.
BackingFile in_view(const State& state, const ManagerConfig& config, const std::string& path,
                    const std::vector<std::string>& rest) {
  const std::string mnt = normalise_host_path(config.mountpoint);
  if (rest.size() < 4 || rest[0] != "apps") {
    throw std::invalid_argument(path + ": not in a view (a directory portalfs makes above them); expected " + mnt +
                                "/apps/APP/data|shared|host/VIEW/...");
  }
  const std::string& app = rest[1];
  const auto record = state.apps.find(app);
  if (record == state.apps.end()) throw std::runtime_error(path + ": no such view: app " + app + " is not installed");
  for (const auto& grant : effective_grants(record->second)) {
    if (policy::to_string(grant.kind) != rest[2] || policy::view_dir_name(grant) != rest[3]) continue;
    const policy::ViewSpec view = make_view(state, config.storage_root, app, record->second, grant, config.apps_dir);
    BackingFile file = split_backing(view.anchor, view.backing);
    file.components.insert(file.components.end(), rest.begin() + 4, rest.end());
    return file;
  }
  throw std::runtime_error(path + ": no such view: app " + app + " has no view " + rest[2] + "/" + rest[3]);
}

// The value of xattr `name` of the file at `proc_path` (not followed if a symlink); nullopt
// when it is not set (or the file system keeps no xattrs).
std::optional<std::string> read_xattr(const std::string& proc_path, const char* name, const std::string& shown_as) {
  std::string value(64, '\0');
  for (int attempt = 0; attempt < 4; ++attempt) {
    const ssize_t n = ::lgetxattr(proc_path.c_str(), name, value.data(), value.size());
    if (n >= 0) {
      value.resize(static_cast<std::size_t>(n));
      // An empty id names no app.
      return value.empty() ? std::nullopt : std::optional<std::string>(value);
    }
    if (errno == ENODATA || errno == ENOTSUP) return std::nullopt;
    if (errno != ERANGE) break;
    // Longer than the buffer: ask its size (it may change again before the next read).
    const ssize_t size = ::lgetxattr(proc_path.c_str(), name, nullptr, 0);
    if (size < 0) break;
    value.assign(static_cast<std::size_t>(size), '\0');
  }
  throw std::runtime_error(shown_as + ": cannot read " + name + ": " + std::strerror(errno));
}

const char* type_of(mode_t mode) {
  if (S_ISREG(mode)) return "file";
  if (S_ISDIR(mode)) return "directory";
  if (S_ISLNK(mode)) return "symlink";
  return "other";
}

}  // namespace

std::string BackingFile::path() const {
  std::string out = anchor == "/" ? "" : anchor;
  for (const auto& c : components) out += "/" + c;
  return out.empty() ? "/" : out;
}

BackingFile locate_backing(const State& state, const ManagerConfig& config, std::string_view asked) {
  if (asked.find('\0') != std::string_view::npos) throw std::invalid_argument("expected a path without NUL");
  if (!asked.starts_with('/')) {
    throw std::invalid_argument(std::string(asked) + ": expected an absolute path");
  }
  const std::string path = normalise_lexically(asked);
  const std::string mnt = normalise_host_path(config.mountpoint);
  const std::string root = normalise_host_path(config.storage_root);
  // The mountpoint first: it is never below a view, while the admin may have put it below the
  // storage root.
  if (path_within(path, mnt)) return in_view(state, config, path, below(path, mnt));
  if (path_within(path, root)) return {config.storage_root, below(path, root)};
  throw std::invalid_argument(path + ": not below the mountpoint " + mnt + " or the storage root " + root +
                              "; expected a file in a view or in the storage root");
}

Provenance read_provenance(const BackingFile& file, const std::string& shown_as) {
  common::UniqueFd anchor(::open(file.anchor.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!anchor) throw std::runtime_error(shown_as + ": cannot open " + file.anchor + ": " + std::strerror(errno));
  const std::string no_such = shown_as + ": no such file or directory (backing " + file.path() + ")";

  // The parent, one component at a time, none followed; the file itself stays a name in it.
  common::UniqueFd parent_held;
  int parent = anchor.get();
  std::string name = ".";  // the anchor itself
  if (!file.components.empty()) {
    const std::vector<std::string> dirs(file.components.begin(), file.components.end() - 1);
    name = file.components.back();
    if (!common::valid_component(name)) throw std::runtime_error(shown_as + ": bad path component \"" + name + "\"");
    if (!dirs.empty()) {
      common::WalkFailure failure;
      auto opened = common::open_beneath(anchor.get(), dirs, O_PATH, &failure);
      if (!opened) {
        if (failure.err == ENOENT) throw std::runtime_error(no_such);
        throw std::runtime_error(shown_as + ": " + common::describe_walk_failure(file.anchor, dirs, failure));
      }
      parent_held = std::move(*opened);
      parent = parent_held.get();
    }
  }

  struct stat st {};
  if (::fstatat(parent, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno == ENOENT) throw std::runtime_error(no_such);
    throw std::runtime_error(shown_as + ": " + file.path() + ": " + std::strerror(errno));
  }
  // The directory is pinned by its fd; only the last component is looked up by name, and
  // lgetxattr does not follow it.
  const std::string proc_path = "/proc/self/fd/" + std::to_string(parent) + "/" + name;
  Provenance out;
  out.type = type_of(st.st_mode);
  out.created_by = read_xattr(proc_path, policy::kCreatedByXattr, shown_as);
  out.changed_by = read_xattr(proc_path, policy::kChangedByXattr, shown_as);
  return out;
}

std::vector<ShownIn> views_showing(const State& state, const ManagerConfig& config, const BackingFile& file) {
  const std::string target = normalise_host_path(file.path());
  const std::string mnt = normalise_host_path(config.mountpoint);
  std::vector<ShownIn> out;
  for (const auto& view : build_views(state, config.storage_root, config.apps_dir)) {
    const std::string backing = normalise_host_path(view.backing);
    if (!path_within(target, backing)) continue;
    std::string path = mnt + "/apps/" + view.app + "/" + policy::to_string(view.kind) + "/" + view.dir_name;
    for (const auto& c : below(target, backing)) path += "/" + c;
    out.push_back({view.app, std::move(path), policy::to_string(view.access)});
  }
  return out;
}

std::string who_line(const std::string& path, const Provenance& provenance) {
  const auto shown = [](const std::string& text) { return common::escape_for_message(text); };
  std::string line = shown(path) + ": ";
  line += provenance.created_by ? "created by " + shown(*provenance.created_by) : "no app recorded as its creator";
  line += ", ";
  if (provenance.changed_by) {
    line += "last changed by " + shown(*provenance.changed_by);
  } else {
    line += provenance.created_by ? "not changed by another app" : "no change by an app recorded";
  }
  return line + "\n";
}

}  // namespace portalfs::mountmgr
