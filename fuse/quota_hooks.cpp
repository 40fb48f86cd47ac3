// SPDX-License-Identifier: MIT
// The ops' side of the quotas the daemon accounts (quota_account.hpp): which counter a view
// answers to, the inode charges of the ops that make names, the counters' upkeep when the views
// change, and statfs in a limited view.
#include <sys/statvfs.h>

#include "fuse/filesystem_internal.hpp"

namespace portalfs::fuse {

std::shared_ptr<QuotaCounter> Filesystem::quota_of(const View& view) const {
  if (view.spec.quotas.empty()) return nullptr;
  return quotas_.find(view.spec.quotas.front().key);
}

std::optional<QuotaCounter::Usage> Filesystem::quota_usage(const std::string& key) const {
  auto q = quotas_.find(key);
  if (!q) return std::nullopt;
  auto u = q->usage();
  if (!u.counted) return std::nullopt;
  return u;
}

int Filesystem::take_inode(const View& view) {
  auto q = quota_of(view);
  return q ? q->charge(0, 1) : 0;
}

void Filesystem::give_inode(const View& view) {
  if (auto q = quota_of(view)) q->adjust(0, -1);
}

void Filesystem::wait_for_count(const View& view) {
  if (auto q = quota_of(view)) q->wait();
}

void Filesystem::update_quotas() {
  std::map<std::string, std::pair<policy::QuotaLimits, std::vector<int>>> limited;
  const auto layout = views_.layout();
  for (const auto& [path, dir] : layout->dirs) {
    for (const auto& [name, id] : dir.views) {
      const View* v = views_.get(id);
      if (!v || v->spec.quotas.empty()) continue;
      auto& entry = limited[v->spec.quotas.front().key];
      entry.first = v->spec.quotas.front().limits;
      // An offline view has no root: its files are not counted until it is back, and then
      // only if the limit is set again (the count keeps what it had).
      if (v->root) entry.second.push_back(v->root->get());
    }
  }
  quotas_.update(limited);
}

void Filesystem::limit_statfs(const View& view, struct statvfs& sv) const {
  auto q = quota_of(view);
  if (!q) return;
  const policy::QuotaLimits limits = q->limits();
  const auto [bytes_left, inodes_left] = q->room();
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
