// SPDX-License-Identifier: MIT
#include "mountmgr/provision.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <system_error>

#include "mountmgr/paths.hpp"

namespace portalfs::mountmgr {
namespace {

using common::UniqueFd;

constexpr mode_t kIntermediateMode = 0700;
constexpr off_t kMaxMarkerBytes = 256;

[[noreturn]] void fail(const std::string& path, const std::string& what, int err) {
  throw ProvisionError(path + ": " + what + ": " + std::strerror(err));
}

[[noreturn]] void refuse_not_dir(const std::string& path) {
  throw ProvisionError(path + ": is a symbolic link or not a directory; refusing to follow it");
}

void check_component(const StorageRoot& root, const std::vector<std::string>& components, std::size_t i) {
  const std::string& c = components[i];
  if (c.empty() || c == "." || c == ".." || c.find('/') != std::string::npos || c.find('\0') != std::string::npos) {
    throw ProvisionError(root.display(components) + ": bad path component \"" + c + "\"");
  }
}

std::vector<std::string> prefix(const std::vector<std::string>& components, std::size_t n) {
  return {components.begin(), components.begin() + static_cast<std::ptrdiff_t>(n)};
}

// Opens components[0, n) below the root as O_PATH fds, one at a time, creating missing ones
// when `create`. Returns an invalid fd when one is missing and !create.
UniqueFd walk(const StorageRoot& root, const std::vector<std::string>& components, std::size_t n, bool create) {
  UniqueFd cur(::openat(root.fd(), ".", O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!cur) fail(root.path(), "cannot open", errno);
  for (std::size_t i = 0; i < n; ++i) {
    check_component(root, components, i);
    const char* name = components[i].c_str();
    UniqueFd next(::openat(cur.get(), name, O_PATH | O_NOFOLLOW | O_DIRECTORY | O_CLOEXEC));
    if (!next && errno == ENOENT) {
      if (!create) return {};
      if (::mkdirat(cur.get(), name, kIntermediateMode) != 0 && errno != EEXIST) {
        fail(root.display(prefix(components, i + 1)), "cannot create", errno);
      }
      next.reset(::openat(cur.get(), name, O_PATH | O_NOFOLLOW | O_DIRECTORY | O_CLOEXEC));
    }
    if (!next) {
      if (errno == ELOOP || errno == ENOTDIR) refuse_not_dir(root.display(prefix(components, i + 1)));
      fail(root.display(prefix(components, i + 1)), "cannot open", errno);
    }
    cur = std::move(next);
  }
  return cur;
}

std::optional<std::string> read_marker(int dir_fd) {
  UniqueFd fd(::openat(dir_fd, kVersionMarker, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
  if (!fd) return std::nullopt;
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > kMaxMarkerBytes) return std::nullopt;
  char buf[kMaxMarkerBytes + 1];
  const ssize_t n = ::read(fd.get(), buf, sizeof buf);
  if (n < 0) return std::nullopt;
  std::string text(buf, static_cast<std::size_t>(n));
  if (text.ends_with('\n')) text.pop_back();
  return text;
}

void write_marker(int dir_fd, const std::string& version, const std::string& display) {
  UniqueFd fd(::openat(dir_fd, kVersionMarker, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0444));
  if (!fd) fail(display + "/" + kVersionMarker, "cannot create", errno);
  const std::string text = version + "\n";
  if (::write(fd.get(), text.data(), text.size()) != static_cast<ssize_t>(text.size())) {
    fail(display + "/" + kVersionMarker, "cannot write", errno ? errno : EIO);
  }
  // The umask may have taken bits off; the marker is read-only for everyone, on purpose.
  if (::fchmod(fd.get(), 0444) != 0) fail(display + "/" + kVersionMarker, "cannot chmod", errno);
}

std::vector<std::string> list_dir(int dir_fd, const std::string& display) {
  const int dup_fd = ::fcntl(dir_fd, F_DUPFD_CLOEXEC, 0);
  if (dup_fd < 0) fail(display, "cannot list", errno);
  DIR* dir = ::fdopendir(dup_fd);
  if (!dir) {
    const int err = errno;
    ::close(dup_fd);
    fail(display, "cannot list", err);
  }
  std::vector<std::string> names;
  errno = 0;
  while (const dirent* entry = ::readdir(dir)) {
    const std::string_view name = entry->d_name;
    if (name != "." && name != "..") names.emplace_back(name);
    errno = 0;
  }
  const int err = errno;
  ::closedir(dir);
  if (err != 0) fail(display, "cannot list", err);
  return names;
}

// Removes `name` below `parent_fd`: a directory with everything in it, anything else by
// unlinkat (a symlink itself, never what it points to). One fd per directory level is open at a
// time; names are read per directory before deleting them, so deletion can't skip entries.
void remove_entry(int parent_fd, const std::string& name, dev_t dev, const std::string& display) {
  struct stat st {};
  if (::fstatat(parent_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno == ENOENT) return;
    fail(display, "cannot stat", errno);
  }
  if (!S_ISDIR(st.st_mode)) {
    if (::unlinkat(parent_fd, name.c_str(), 0) != 0 && errno != ENOENT) fail(display, "cannot delete", errno);
    return;
  }
  if (st.st_dev != dev) {
    throw ProvisionError(display + ": is another filesystem mounted here; refusing to delete across it");
  }
  UniqueFd fd(::openat(parent_fd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd) {
    if (errno == ELOOP || errno == ENOTDIR) refuse_not_dir(display);  // swapped under us
    fail(display, "cannot open", errno);
  }
  struct stat opened {};
  if (::fstat(fd.get(), &opened) != 0) fail(display, "cannot stat", errno);
  if (opened.st_dev != st.st_dev || opened.st_ino != st.st_ino) {
    throw ProvisionError(display + ": changed while being deleted; refusing to go on");
  }
  for (const auto& child : list_dir(fd.get(), display)) {
    remove_entry(fd.get(), child, dev, display + "/" + child);
  }
  if (::unlinkat(parent_fd, name.c_str(), AT_REMOVEDIR) != 0 && errno != ENOENT) {
    fail(display, "cannot delete", errno);
  }
}

}  // namespace

StorageRoot::StorageRoot(std::string path) : path_(std::move(path)) {
  std::error_code ec;
  std::filesystem::create_directories(path_, ec);
  if (ec) throw ProvisionError(path_ + ": cannot create the storage root: " + ec.message());
  fd_.reset(::open(path_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd_) fail(path_, "cannot open the storage root", errno);
}

std::string StorageRoot::display(const std::vector<std::string>& components) const {
  std::string out = path_;
  for (const auto& c : components) out += "/" + c;
  return out;
}

Ensured ensure_dir(const StorageRoot& root, const std::vector<std::string>& components, const LeafSpec& leaf) {
  if (components.empty()) throw ProvisionError(root.path() + ": refusing to provision the storage root itself");
  const std::size_t last = components.size() - 1;
  UniqueFd parent = walk(root, components, last, /*create=*/true);
  check_component(root, components, last);
  const std::string display = root.display(components);
  const char* name = components[last].c_str();

  constexpr int kOpenFlags = O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC;
  Ensured out;
  UniqueFd fd(::openat(parent.get(), name, kOpenFlags));
  if (!fd && errno == ENOENT) {
    // Made closed (0700, root) and opened up only once owner and marker are in place.
    if (::mkdirat(parent.get(), name, 0700) == 0) {
      out.created = true;
    } else if (errno != EEXIST) {
      fail(display, "cannot create", errno);
    }
    fd.reset(::openat(parent.get(), name, kOpenFlags));
  }
  if (!fd) {
    if (errno == ELOOP || errno == ENOTDIR) refuse_not_dir(display);
    fail(display, "cannot open", errno);
  }

  if (out.created) {
    if (leaf.version_marker) write_marker(fd.get(), *leaf.version_marker, display);
    if (leaf.owner && ::fchown(fd.get(), leaf.owner->uid, leaf.owner->gid) != 0) fail(display, "cannot chown", errno);
    if (::fchmod(fd.get(), leaf.mode) != 0) fail(display, "cannot chmod", errno);
    return out;
  }
  if (leaf.chown_existing && leaf.owner && ::fchown(fd.get(), leaf.owner->uid, leaf.owner->gid) != 0) {
    fail(display, "cannot chown", errno);
  }
  out.marker = read_marker(fd.get());
  return out;
}

bool remove_tree(const StorageRoot& root, const std::vector<std::string>& components) {
  if (components.empty()) throw ProvisionError(root.path() + ": refusing to delete the storage root itself");
  const std::size_t last = components.size() - 1;
  UniqueFd parent = walk(root, components, last, /*create=*/false);
  if (!parent) return false;
  check_component(root, components, last);
  struct stat parent_st {};
  if (::fstat(parent.get(), &parent_st) != 0) fail(root.display(prefix(components, last)), "cannot stat", errno);
  struct stat st {};
  if (::fstatat(parent.get(), components[last].c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno == ENOENT) return false;
    fail(root.display(components), "cannot stat", errno);
  }
  remove_entry(parent.get(), components[last], parent_st.st_dev, root.display(components));
  return true;
}

bool dir_exists(const StorageRoot& root, const std::vector<std::string>& components) {
  try {
    UniqueFd fd = walk(root, components, components.size(), /*create=*/false);
    return fd.valid();
  } catch (const ProvisionError&) {
    return false;
  }
}

std::vector<std::string> app_dir_components(const std::string& app) { return {"apps", app}; }

std::vector<std::string> data_dir_components(const std::string& app, const std::string& name) {
  std::vector<std::string> out = app_dir_components(app);
  for (auto& segment : split_path(name)) out.push_back(std::move(segment));
  return out;
}

std::vector<std::string> share_dir_components(const std::string& share) { return {"shared", share}; }

std::vector<std::string> storage_dir_components(const std::string& name) { return {"storage", name}; }

}  // namespace portalfs::mountmgr
