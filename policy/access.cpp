// SPDX-License-Identifier: MIT
// The access decision. Two tables drive it: is_mutation() (which ops change the filesystem)
// and two_place_rule() (for ops that join two places: which side must be writable, and whether
// the two places may be different views). Every decide*() applies the ranking of access.hpp:
// ENOENT > EXDEV > EROFS > EPERM/ENODATA, so a caller learns nothing about a place it can't see
// from an error meant for a place it can.
//
// The two-place rules:
//   rename     same view only; both sides writable: it removes the entry from `from`.
//   link       same view only; only `to` writable: the source inode gains a name, no entry in
//              the source directory changes.
//   copy_into  any two views; only `to` writable, `from` is read. copy_file_range copies bytes,
//              it shares no inode, so it gives an app nothing a read() and a write() wouldn't.
//              EXDEV here would only force the kernel's slower read/write fallback.

#include "policy/access.hpp"

#include <sys/stat.h>

#include <cerrno>

namespace portalfs::policy {
namespace {

struct TwoPlaceRule {
  bool same_view_only = false;
  bool from_writable = false;
  bool to_writable = false;
};

TwoPlaceRule two_place_rule(Op op) {
  switch (op) {
    case Op::rename:
      return {.same_view_only = true, .from_writable = true, .to_writable = true};
    case Op::link:
      return {.same_view_only = true, .from_writable = false, .to_writable = true};
    case Op::copy_into:
      return {.same_view_only = false, .from_writable = false, .to_writable = true};
    default: {
      // Not a two-place op: each place is held to the one-place rule.
      const bool mutation = is_mutation(op);
      return {.same_view_only = false, .from_writable = mutation, .to_writable = mutation};
    }
  }
}

// Every mode but read changes something; what it may change is decide_made()'s.
bool writable(Target target) { return writes(target.access); }

}  // namespace

bool is_mutation(Op op) {
  // No default: adding an Op without deciding here is a -Wswitch warning (an error in CI).
  switch (op) {
    case Op::lookup:
    case Op::getattr:
    case Op::readlink:
    case Op::readdir:
    case Op::statfs:
    case Op::open_read:
    case Op::read:
    case Op::getxattr:
    case Op::listxattr:
    case Op::flush:
    case Op::fsync:
      return false;
    case Op::open_write:
    case Op::write:
    case Op::create:
    case Op::mknod:
    case Op::mkdir:
    case Op::symlink:
    case Op::link:
    case Op::unlink:
    case Op::rmdir:
    case Op::rename:
    case Op::setattr:
    case Op::setxattr:
    case Op::removexattr:
    case Op::fallocate:
    case Op::copy_into:
    case Op::truncate:
      return true;
  }
  return true;  // a value outside the enum: fail closed
}

Decision decide(Op op, Target target) {
  if (!target.granted) return {ENOENT};
  if (is_mutation(op) && (target.above_views || !writable(target))) return {EROFS};
  return {};
}

Decision decide(Op op, Target from, Target to, bool same_view) {
  const TwoPlaceRule rule = two_place_rule(op);
  if (!from.granted || !to.granted) return {ENOENT};
  if (from.above_views || to.above_views) return {EROFS};
  if (rule.same_view_only && !same_view) return {EXDEV};
  if ((rule.from_writable && !writable(from)) || (rule.to_writable && !writable(to))) {
    return {EROFS};
  }
  return {};
}

namespace {
// Ops decide_made() always allows: they add an entry to the (parent) directory they act on,
// or are I/O on a file whose open was decided.
bool adds_entry_or_io(Op op) {
  switch (op) {
    case Op::create:
    case Op::mknod:
    case Op::mkdir:
    case Op::symlink:
    case Op::write:
    case Op::fallocate:
    case Op::copy_into:
    case Op::flush:
    case Op::fsync:
      return true;
    default:
      return false;
  }
}

bool reads_contents(Op op) {
  switch (op) {
    case Op::open_read:
    case Op::read:
    case Op::readlink:
    case Op::getxattr:
    case Op::listxattr:
      return true;
    default:
      return false;
  }
}

bool removes_or_moves(Op op) {
  return op == Op::unlink || op == Op::rmdir || op == Op::rename || op == Op::truncate;
}
}  // namespace

Decision decide_made(Op op, Access access, Maker maker) {
  if (!protects(access) || adds_entry_or_io(op)) return {};
  const bool other = maker == Maker::other;
  switch (access) {
    case Access::create_only:
      if (other) {
        if (reads_contents(op)) return {EACCES};
        return is_mutation(op) ? Decision{EPERM} : Decision{};
      }
      return op == Op::open_write || op == Op::truncate ? Decision{EPERM} : Decision{};
    case Access::no_delete:
      return other && removes_or_moves(op) ? Decision{EPERM} : Decision{};
    case Access::own_files:
      return other && is_mutation(op) ? Decision{EPERM} : Decision{};
    case Access::read:
    case Access::read_write:
      return {};
  }
  return {EPERM};  // a value outside the enum: fail closed
}

Decision decide_sidecar(Op op, Maker maker, bool sidecar_name) {
  const bool own = maker == Maker::app;
  switch (op) {
    case Op::create:
    case Op::mknod:
      return sidecar_name ? Decision{} : Decision{EROFS};
    case Op::rename:
      return own && sidecar_name ? Decision{} : Decision{EROFS};
    case Op::open_write:
    case Op::write:
    case Op::truncate:
    case Op::setattr:
    case Op::setxattr:
    case Op::removexattr:
    case Op::fallocate:
    case Op::copy_into:
    case Op::unlink:
      return own ? Decision{} : Decision{EROFS};
    default:
      return {EROFS};  // mkdir, symlink, link, rmdir; reads were never refused
  }
}

bool may_refuse(Op op, Access access) {
  return !decide_made(op, access, Maker::app).allowed() || !decide_made(op, access, Maker::other).allowed();
}

bool shows(Access access, Maker maker, bool is_dir) {
  return access != Access::create_only || maker == Maker::app || is_dir;
}

bool is_user_xattr(std::string_view name) { return name.starts_with("user."); }

Decision decide_xattr(Op op, Target target, std::string_view name) {
  const Decision base = decide(op, target);
  if (!base.allowed()) return base;
  return decide_xattr_name(op, name);
}

Decision decide_xattr_name(Op op, std::string_view name) {
  if (is_user_xattr(name)) return {};
  switch (op) {
    case Op::getxattr: return {ENODATA};
    case Op::setxattr:
    case Op::removexattr: return {EPERM};
    default: return {};  // listxattr: the filesystem filters the list with is_user_xattr()
  }
}

Decision decide_mknod(Target target, GrantKind kind, uint32_t mode) {
  const Decision base = decide(Op::mknod, target);
  if (!base.allowed()) return base;
  switch (mode & S_IFMT) {
    case 0:  // mknod(2) treats a missing type as a regular file
    case S_IFREG: return {};
    // Special files: only in an app's own data directory. Device nodes are emulated there
    // (fuse/device_nodes.hpp: never openable as devices).
    case S_IFIFO:
    case S_IFSOCK:
    case S_IFCHR:
    case S_IFBLK: return kind == GrantKind::data ? Decision{} : Decision{EPERM};
    default: return {EPERM};  // anything mknod can't make anyway
  }
}

}  // namespace portalfs::policy
