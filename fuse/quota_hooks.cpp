// SPDX-License-Identifier: MIT
// The ops' side of the quotas the daemon accounts (quota_account.hpp): which counter a view
// answers to, the inode charges of the ops that make names, the counters' upkeep when the views
// change, and statfs in a limited view.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/xattr.h>

#include <algorithm>
#include <tuple>

#include "fuse/filesystem_internal.hpp"
#include "policy/provenance.hpp"

namespace portalfs::fuse {

namespace {
// The app of an APP:SHARE key ("" for an app's or a share's): the key is "APP:SHARE".
std::string_view app_of(const std::string& key) {
  const auto colon = key.find(':');
  return colon == std::string::npos ? std::string_view() : std::string_view(key).substr(0, colon);
}

// `view`'s counters: its app's or share's limit, and the one of app `maker` in the share.
QuotaCounters counters_of(const QuotaAccounts& quotas, const View& view, std::string_view maker) {
  QuotaCounters out;
  for (const auto& q : view.spec.quotas) {
    const std::string_view app = app_of(q.key);
    if (!app.empty() && app != maker) continue;
    if (auto c = quotas.find(q.key)) out.push_back(std::move(c));
  }
  return out;
}

bool has_app_share(const View& view) {
  return std::any_of(view.spec.quotas.begin(), view.spec.quotas.end(),
                     [](const policy::QuotaSpec& q) { return !app_of(q.key).empty(); });
}
}  // namespace

QuotaCounters Filesystem::quota_of(const View& view) const {
  if (view.spec.quotas.empty()) return {};
  return counters_of(quotas_, view, records(view) ? std::string_view(view.spec.app) : std::string_view());
}

namespace {
// The app that made `fd`'s file ("" for none: the host's, or made before provenance).
std::string creator_of(const std::string& proc_path) {
  char buf[256];
  const ssize_t len = ::getxattr(proc_path.c_str(), policy::kCreatedByXattr, buf, sizeof(buf));
  return len > 0 ? std::string(buf, static_cast<size_t>(len)) : std::string();
}
}  // namespace

QuotaCounters Filesystem::quota_of(const View& view, int fd) const {
  if (view.spec.quotas.empty()) return {};
  if (!has_app_share(view)) return counters_of(quotas_, view, {});
  return counters_of(quotas_, view, creator_of(proc_path(fd)));
}

QuotaCounters Filesystem::quota_of(const View& view, FileHandle& fh) const {
  if (view.spec.quotas.empty()) return {};
  if (!has_app_share(view)) return counters_of(quotas_, view, {});
  // Not a getxattr per write: the creator of an open file can't change through a view.
  std::call_once(fh.creator_read, [&] { fh.creator = creator_of(proc_path(fh.fd.get())); });
  return counters_of(quotas_, view, fh.creator);
}

QuotaCounters Filesystem::quota_of(const View& view, int dir_fd, const char* name) const {
  if (view.spec.quotas.empty()) return {};
  if (!has_app_share(view)) return counters_of(quotas_, view, {});
  common::UniqueFd fd(::openat(dir_fd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC));
  if (!fd) return counters_of(quotas_, view, {});
  return quota_of(view, fd.get());
}

std::optional<QuotaCounter::Usage> Filesystem::quota_usage(const std::string& key) const {
  auto q = quotas_.find(key);
  if (!q) return std::nullopt;
  auto u = q->usage();
  if (!u.counted) return std::nullopt;
  return u;
}

int Filesystem::take_inode(const View& view) { return charge_all(quota_of(view), 0, 1); }

void Filesystem::give_inode(const View& view) {
  for (const auto& q : quota_of(view)) q->adjust(0, -1);
}

QuotaCounters Filesystem::quota_all(const View& view) const {
  QuotaCounters out;
  for (const auto& q : view.spec.quotas) {
    if (auto c = quotas_.find(q.key)) out.push_back(std::move(c));
  }
  return out;
}

void Filesystem::quota_entered(const QuotaCounters& counters, int dir_fd, int entry_fd, bool made) {
  if (counters.empty()) return;
  struct stat dir {};
  if (::fstat(dir_fd, &dir) != 0) return;
  for (const auto& c : counters) c->entered({dir.st_dev, dir.st_ino}, entry_fd, made);
}

void Filesystem::update_quotas() {
  std::map<std::string, std::pair<policy::QuotaLimits, std::vector<int>>> limited;
  const auto layout = views_.layout();
  for (const auto& [path, dir] : layout->dirs) {
    for (const auto& [name, id] : dir->views) {
      const View* v = views_.get(id);
      if (!v) continue;
      for (const auto& q : v->spec.quotas) {
        auto& entry = limited[q.key];
        entry.first = q.limits;
        // An offline view has no root: its files are not counted until it is back, and then
        // only if the limit is set again (the count keeps what it had).
        if (v->root) entry.second.push_back(v->root->get());
      }
    }
  }
  quotas_.update(limited);
}

void Filesystem::quota_host_changed(const HostChange& c) {
  switch (c.kind) {
    case HostChange::overflow:
      quotas_.host_changed(-1);  // changes lost: every count is stale
      return;
    case HostChange::attrib:
      return;  // no size or entry changed (a truncate reports a modify)
    case HostChange::moved:
      if (c.to_dir) quotas_.host_changed(c.to_dir.get());
      [[fallthrough]];
    default:
      if (c.dir) quotas_.host_changed(c.dir.get());
  }
}

void Filesystem::limit_statfs(const View& view, struct statvfs& sv) const {
  // The tightest of the view's limits (a share's, and the app's own in it): the one with the
  // least room, bytes and inodes each.
  policy::QuotaLimits limits;
  uint64_t bytes_left = UINT64_MAX, inodes_left = UINT64_MAX;
  for (const auto& q : quota_of(view)) {
    const policy::QuotaLimits l = q->limits();
    const auto [b, i] = q->room();
    if (l.bytes != 0 && b <= bytes_left) std::tie(limits.bytes, bytes_left) = std::pair(l.bytes, b);
    if (l.inodes != 0 && i <= inodes_left) std::tie(limits.inodes, inodes_left) = std::pair(l.inodes, i);
  }
  if (limits.bytes != 0 && sv.f_frsize != 0) {
    const uint64_t unit = sv.f_frsize;
    sv.f_blocks = (limits.bytes + unit - 1) / unit;
    // Free is the room below the limit, or less when the disk itself has less.
    const uint64_t free = std::min<uint64_t>(bytes_left / unit, sv.f_bavail);
    sv.f_bfree = sv.f_bavail = free;
  }
  if (limits.inodes != 0) {
    // (A file system that counts no inodes, as btrfs, says 0 of 0: no less room than the limit's.)
    const uint64_t free = sv.f_files ? std::min<uint64_t>(inodes_left, sv.f_favail) : inodes_left;
    sv.f_files = limits.inodes;
    sv.f_ffree = sv.f_favail = free;
  }
}

}  // namespace portalfs::fuse
