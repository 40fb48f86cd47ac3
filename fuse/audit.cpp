// SPDX-License-Identifier: MIT
// The audit trail of the views (common/audit.hpp): denials and changes, one record per request.
//
// One place per request: the trampoline (ops_table.cpp) opens an Audited scope when the audit
// is on; resolve_for(), where every op meets the policy, notes the op and the inode(s) and
// name(s) it acts on; after the op, before the reply (after it the kernel may forget the
// inodes), Audited::done() turns the note and the op's errno into at most one record:
//  - a denial: EACCES, EPERM or EROFS, with the op and the errno;
//  - a change: a successful op of kChanges, or a handle that wrote, at its flush or release
//    ("write-close").
//  - a read, in a view whose grant asks for it (ViewSpec::audit_reads): an open that can read
//    ("open-read", one per open, not per read) and a directory listing ("readdir", one per
//    listing from its start), noted by the op (note_read). Other views pay one branch.
// The worker pays for the path (one readlink of the inode's cached O_PATH fd) and a queue
// push; formatting and writing are the AuditLog thread's.
//
// Paths are relative to the view's root, as the app sees them below its mount. The inode
// table keeps no names (inodes are file handles), so the kernel's own name of the O_PATH fd
// is used. For a file removed meanwhile (written through a handle still open, then closed)
// that is the path it had when it was removed, which /proc shows with " (deleted)" after it:
// the record names that path, as it names the removal before.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <climits>
#include <cstring>
#include <string_view>

#include "common/audit.hpp"
#include "common/log.hpp"
#include "fuse/filesystem_internal.hpp"

namespace portalfs::fuse {

using policy::Op;

namespace {

thread_local Filesystem::AuditNote* current_note = nullptr;

// The ops whose success is a change worth a record (write-close is noted by record_writes()).
bool is_change(Op op) {
  switch (op) {
    case Op::create: case Op::mknod: case Op::mkdir: case Op::symlink: case Op::link:
    case Op::unlink: case Op::rmdir: case Op::rename: case Op::setattr: case Op::setxattr:
    case Op::removexattr:
      return true;
    default:
      return false;
  }
}

const char* op_name(Op op) {
  switch (op) {
    case Op::lookup: return "lookup";
    case Op::getattr: return "getattr";
    case Op::readlink: return "readlink";
    case Op::readdir: return "readdir";
    case Op::statfs: return "statfs";
    case Op::open_read: return "open-read";
    case Op::read: return "read";
    case Op::getxattr: return "getxattr";
    case Op::listxattr: return "listxattr";
    case Op::flush: return "flush";
    case Op::fsync: return "fsync";
    case Op::open_write: return "open-write";
    case Op::write: return "write";
    case Op::create: return "create";
    case Op::mknod: return "mknod";
    case Op::mkdir: return "mkdir";
    case Op::symlink: return "symlink";
    case Op::link: return "link";
    case Op::unlink: return "unlink";
    case Op::rmdir: return "rmdir";
    case Op::rename: return "rename";
    case Op::setattr: return "setattr";
    case Op::setxattr: return "setxattr";
    case Op::removexattr: return "removexattr";
    case Op::fallocate: return "fallocate";
    case Op::copy_into: return "copy-into";
    case Op::truncate: return "truncate";
  }
  return "op";
}

bool is_denial(int err) { return err == EACCES || err == EPERM || err == EROFS; }

// `path` below `root` as "/x/y" ("/" for the root itself); "" when it is not below it.
std::string below(const std::string& path, const std::string& root) {
  if (path.compare(0, root.size(), root) != 0) return {};
  if (path.size() == root.size()) return "/";
  if (path[root.size()] != '/') return {};
  return path.substr(root.size());
}

std::string read_link(int dirfd, const char* name) {
  char buf[PATH_MAX];
  const ssize_t n = ::readlinkat(dirfd, name, buf, sizeof(buf));
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : std::string();
}

}  // namespace

// The note is kept with the audit off too: the log lines of a request (a denial at debug
// level, a request that failed) name its app, view and op (the journal's fields).
Filesystem::Audited::Audited(Filesystem& fs, bool echo) : fs_(fs) {
  if (!echo) current_note = &note_;
}

Filesystem::Audited::~Audited() {
  if (current_note == &note_) current_note = nullptr;
}

void Filesystem::Audited::done(int err) {
  if (current_note != &note_) return;  // an echo
  current_note = nullptr;
  if (is_denial(err) && note_.view && common::log_level() == common::LogLevel::debug) {
    const auto& spec = note_.view->spec;
    common::log(common::LogLevel::debug,
                std::string("denied: ") + op_name(note_.op) + " in " + spec.app + "'s view " +
                    policy::to_string(spec.kind) + "/" + spec.dir_name + ": " + common::errno_name(err),
                fields(err));
  }
  if (!fs_.audit_) return;
  try {
    fs_.audit_outcome(note_, err);
  } catch (const std::exception&) {
    // Out of memory while building the record: the op's own answer matters more.
  }
}

common::LogFields Filesystem::Audited::fields(int err) const {
  common::LogFields f;
  f.op = op_name(note_.op);
  f.err = err;
  if (note_.view) {
    f.app = note_.view->spec.app;
    f.view = note_.view->spec.dir_name;
  }
  return f;
}

void Filesystem::note_node(const Node& node, Op op, const char* name) {
  if (!current_note) return;
  current_note->op = op;
  current_note->view = node.view;
  current_note->inode = node.inode;
  current_note->name = name;
  current_note->change = nullptr;
}

void Filesystem::note_nodes(const Node& from, const Node& to, Op op, const char* from_name,
                            const char* to_name) {
  if (!current_note) return;
  note_node(from, op, from_name);
  current_note->to_inode = to.inode;
  current_note->to_name = to_name;
}

void Filesystem::note_change(const Node& node, const char* change, std::string detail) {
  if (!current_note) return;
  note_node(node, Op::write, nullptr);
  current_note->change = change;
  current_note->detail = std::move(detail);
}

std::string Filesystem::view_path(const View& view, Inode* inode, const char* name) {
  std::string path;
  if (inode && view.root) {
    auto fd = table_.fd(inode, view.root->get());
    if (fd) {
      std::string full = read_link(proc_fd_.get(), fd_name(fd->get()).c_str());
      // One fstat, only for a name that ends so: a file may be called "x (deleted)".
      constexpr std::string_view kDeleted = " (deleted)";
      struct stat st {};
      if (full.ends_with(kDeleted) && ::fstat(fd->get(), &st) == 0 && st.st_nlink == 0) {
        full.resize(full.size() - kDeleted.size());
      }
      // The backing path as configured is what the kernel shows, unless a symlink leads
      // there (a storage root reached through one): then the root's own name tells.
      path = below(full, view.spec.backing);
      if (path.empty()) path = below(full, read_link(proc_fd_.get(), fd_name(view.root->get()).c_str()));
      if (path.empty()) path = full;  // not below its root any more (moved on the host)
    }
  }
  if (!name) return path;
  if (path.empty() || path.back() != '/') path += '/';
  return path + name;
}

void Filesystem::audit_outcome(const AuditNote& note, int err) {
  if (!note.view) return;  // above the views, or a view that is gone: no app's file
  const bool denied = is_denial(err);
  const char* change = note.change ? note.change : is_change(note.op) ? op_name(note.op) : nullptr;
  if (!denied && (err != 0 || !change)) return;
  common::AuditRecord r;
  r.app = note.view->spec.app;
  r.view = std::string(policy::to_string(note.view->spec.kind)) + "/" + note.view->spec.dir_name;
  r.op = denied ? op_name(note.op) : change;
  r.path = view_path(*note.view, note.inode, note.name);
  if (note.to_inode) {
    const View* to = views_.get(note.to_inode->view);
    if (to) r.to = view_path(*to, note.to_inode, note.to_name);
  }
  r.result = denied ? common::errno_name(err) : "ok";
  if (!denied) r.detail = note.detail;
  audit_->post(std::move(r));
}

void Filesystem::note_read(const char* what) {
  if (current_note) current_note->change = what;
}

// Recorded: the audit is on and this is not an echo (the note is kept with the audit off too,
// for the log's fields; a view auditing reads must not pay for listings nobody records).
bool Filesystem::audited() const { return audit_ && current_note != nullptr; }

void Filesystem::note_setattr(int to_set, const struct stat& attr) {
  if (!current_note) return;
  // The record's op names the main change; its detail lists the values asked for.
  std::string detail;
  auto add = [&detail](const std::string& part) { detail += (detail.empty() ? "" : " ") + part; };
  const char* op = "utimes";
  if (to_set & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME)) add("times");
  if (to_set & FUSE_SET_ATTR_SIZE) {
    op = "truncate";
    add("size=" + std::to_string(attr.st_size));
  }
  if (to_set & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID)) {
    op = "chown";
    if (to_set & FUSE_SET_ATTR_UID) add("uid=" + std::to_string(attr.st_uid));
    if (to_set & FUSE_SET_ATTR_GID) add("gid=" + std::to_string(attr.st_gid));
  }
  if (to_set & FUSE_SET_ATTR_MODE) {
    op = "chmod";
    char mode[16];
    std::snprintf(mode, sizeof(mode), "mode=%04o", attr.st_mode & 07777);
    add(mode);
  }
  current_note->change = op;
  current_note->detail = std::move(detail);
}

}  // namespace portalfs::fuse
