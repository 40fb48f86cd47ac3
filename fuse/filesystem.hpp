// SPDX-License-Identifier: MIT
#pragma once

// The filesystem: one FUSE mount, one view per grant, every op enforced and id-mapped.
//
// Every op has one shape: resolve the inode (and its view), ask policy::decide() (the only
// place rules live), act with *at syscalls on O_PATH fds and return a Result; its trampoline
// replies exactly once (reply.cpp), then tells sibling views what changed.
// Sibling invalidations go to the Notifier's thread (notifier.hpp), never sent by a worker:
// the kernel holds the directory (or page) locks of the request until it is answered, and a
// worker invalidating a sibling view's directory could wait for a request of that sibling
// that waits for a worker (two apps changing one shared directory).
//
// Coherence of data between views: a file with siblings gets attributes that expire at once
// and the kernel's auto_inval_data, so each read in a sibling view first revalidates the size
// and mtime, and drops pages another view changed. Invalidations alone come too late (after
// the writer's reply) and, landing during a sibling's read, even make it worse: the kernel
// then keeps the zero-filled page of a short read at the old size.
//
// Files: ops_entry.cpp (lookup, attrs, links), ops_namespace.cpp (create, remove, rename),
// ops_file.cpp (open, I/O), ops_dir.cpp (directories), ops_xattr.cpp, synthetic.cpp (the
// read-only directories above the views), ops_table.cpp (the libfuse op table), reply.cpp
// (Results to replies), session_io.hpp (the session's I/O hooks), passthrough.hpp, trash.cpp
// (deletes into a share's trash).

#include "fuse/fuse_api.hpp"
#include <sys/statvfs.h>

#include <dirent.h>
#include <fcntl.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "common/log.hpp"
#include "common/result.hpp"
#include "common/unique_fd.hpp"
#include "fuse/host_watch.hpp"
#include "fuse/inode_shares.hpp"
#include "fuse/inode_table.hpp"
#include "fuse/notifier.hpp"
#include "fuse/open_shares.hpp"
#include "fuse/passthrough.hpp"
#include "fuse/privileges.hpp"
#include "fuse/quota_account.hpp"
#include "fuse/views.hpp"
#include "policy/access.hpp"

namespace portalfs::common {
class AuditLog;
}

namespace portalfs::fuse {

struct Options {
  // Seconds the kernel may keep names and attributes. Every change made through portalfs is
  // invalidated in every view that shows it; the timeouts bound how late a change made on the
  // host, behind portalfs's back, shows. Shared directories are the ones people also fill
  // from the host (a file manager, a sync client); a data directory is its app's alone.
  double entry_timeout = 1.0;   // names in shared views and above the views
  double attr_timeout = 1.0;    // and attributes
  double data_timeout = 60.0;   // names and attributes in data views
  bool events = true;           // raise change events in sibling views (events.cpp)
  // Change events queued at most (events.cpp), and invalidations (notifier.hpp): past these,
  // what would not fit is dropped and every view drops everything it cached. Tests make them
  // small to overflow them.
  size_t events_queue = 65536;
  size_t invalidations_queue = size_t{1} << 20;
  // Off over a storage root that can't (backing_fs.hpp): re-opening inodes by file handle, and
  // watching the views' roots for changes made behind the daemon's back.
  bool backing_handles = true;
  bool host_watch = true;
  size_t fd_cache = 8192;       // O_PATH fds kept open at most (the rest re-open by handle)
  bool passthrough = true;      // files pass through if the kernel can (passthrough.hpp; off over FUSE: backing_fs.hpp)
  uint16_t request_timeout = 0;  // seconds before the kernel ends a connection that hangs (session_io.hpp)
  bool io_uring = true;         // FUSE over io_uring when the kernel offers it (uring.hpp)
  // The directories above the views (/, apps/, apps/<app>/, apps/<app>/<kind>/) are root's,
  // with this mode and group: on the host only root (and an admin group given 0750) may go
  // through them to any app's files (0500 root only, 0550 with the admin group). A container
  // reaches its views by bind mounts of the view roots, which pass no parent directory.
  mode_t top_mode = 0500;
  gid_t top_gid = 0;
  // Files one app may hold open through the daemon at once (each is a daemon fd); one more
  // gets EMFILE, for that app alone. 0: no limit. portalfsd sizes it from its open-file limit.
  size_t open_files_per_app = 0;
  std::map<std::string, size_t> open_files_of{};  // per app, instead of open_files_per_app
  // Inodes one app may have in the table at once (inode_shares.hpp); a lookup of one more gets
  // ENFILE, for that app alone. 0: no limit. Without handles (each inode pins an fd) it is no
  // larger than open_files_per_app.
  size_t inodes_per_app = 0;
  std::map<std::string, size_t> inodes_of{};  // per app, instead of inodes_per_app
  /// Records which app made and changed files of shared views (provenance.cpp). Off is a
  /// bench and diagnostic switch only: the modes that protect then count every file as another's.
  bool provenance = true;
  /// On over a FUSE storage root (backing_fs.hpp): the kernel opens views' directories with
  /// OPENDIR, each open keeps its listing's stream on the backing directory from one READDIR
  /// to the next, and the kernel serves a cached listing only for half the entry timeout after
  /// it was read (ops_dir.cpp). Off: the kernel opens directories itself and caches their
  /// listings until they change; each READDIR opens the backing directory.
  bool dir_streams = false;
};

/// One open file.
struct FileHandle {
  common::UniqueFd fd;
  Inode* inode = nullptr;
  std::shared_ptr<std::atomic<bool>> killed;  // the view's forced-revoke flag
  bool counted = false;  // counted by Passthrough::acquire
  int accmode = O_RDONLY;  // of fd: the daemon's own open, decided once by open() or create()
  bool made = false;       // create() made the file: its provenance says who
  std::atomic<bool> wrote{false};  // written to (or truncated) through this handle
  // Opened for writing while it showed set-id bits (setid_bits.hpp): its writes are served,
  // and the first one the kernel flags clears them.
  std::atomic<bool> shows_setid{false};
  OpenShare share;                 // counted against its app's open files
  // Its file's creator (provenance), read once, at the first size change through it in a view
  // with an APP:SHARE limit (quota_hooks.cpp): it is recorded when the file is made, before the
  // handle is given out, and no view can change it (trusted.*: ops_xattr.cpp).
  std::once_flag creator_read;
  std::string creator;
  [[nodiscard]] bool readable() const { return accmode != O_WRONLY; }
};

struct DirEntry;
class DirListing;  // a READDIR reply being filled (ops_dir.cpp)

/// A listing of a backing directory (ops_dir.cpp): its fd, read with getdents64, the records
/// read but not answered yet, and the offset of the READDIR they answer.
struct DirStream {
  static constexpr size_t kBufSize = 32768;  // what glibc's readdir reads at a time
  common::UniqueFd fd;
  std::unique_ptr<char[]> buf;  // getdents64 records; [pos, end) not answered yet
  size_t pos = 0, end = 0;
  off_t at = 0;  // the kernel's offset that continues at pos
  OpenShare share;  // a kept stream: counted against its app's open files
};
/// One directory the kernel opened (Options::dir_streams): its listing's stream, kept from one
/// READDIR to the next, opened at the first and closed at the listing's end.
struct DirHandle {
  std::mutex mutex;  // one READDIR at a time
  const Inode* inode = nullptr;  // the directory the stream lists (a key: never dereferenced)
  uint32_t generation = 0;
  DirStream stream;
};

/// The handles the kernel holds (fuse_file_info::fh). The kernel releases each one, except
/// when the connection ends with files still open (the daemon stopped while apps work): the
/// Filesystem then frees what is left.
template <class Handle>
class OpenHandles {
 public:
  OpenHandles() = default;
  OpenHandles(const OpenHandles&) = delete;
  OpenHandles& operator=(const OpenHandles&) = delete;
  ~OpenHandles() {
    for (Handle* h : open_) delete h;
  }
  uint64_t add(std::unique_ptr<Handle> h) {
    std::lock_guard lock(mutex_);
    open_.insert(h.get());
    return reinterpret_cast<uint64_t>(h.release());
  }
  std::unique_ptr<Handle> take(uint64_t fh) {
    auto* h = reinterpret_cast<Handle*>(fh);
    std::lock_guard lock(mutex_);
    open_.erase(h);
    return std::unique_ptr<Handle>(h);
  }

 private:
  std::mutex mutex_;
  std::unordered_set<Handle*> open_;
};

using common::Errno;
using common::Result;

/// A change that inotify and fanotify watchers of a sibling view must hear of, as that view's
/// inodes name it (events.cpp raises it there: "an echo").
struct Event {
  // modified: by a handle, whose close (closed) follows; modified_once: with no handle to
  // wait for (a truncate, a change on the host).
  enum Kind : uint8_t { created, deleted, moved, modified, modified_once, closed, attrib };
  struct Node {  // a FUSE inode as a file handle names it
    fuse_ino_t ino = 0;
    uint32_t generation = 0;
  };
  struct Source {  // an inode of the view that made the change, and its backing file
    const Inode* inode = nullptr;  // a key only: it may be freed by the time the echo runs
    ViewId view = kNoView;
    dev_t dev = 0;
    ino_t ino = 0;
  };
  Kind kind = created;
  // As the changing view knows them: the directory (the file, for modified, closed and
  // attrib), the new directory of a move, and a new entry.
  Source from, to, made;
  std::string name, to_name;
  mode_t type = 0;  // S_IFMT of the entry
  // Set for each sibling view when the echo runs: its directories.
  Node dir, to_dir;
};

/// One request as an op sees it: who asks, and the invalidations the op owes the sibling views
/// (other views showing what it changed). They are collected BEFORE the reply (after it the
/// kernel may forget an inode at any moment) and queued for the Notifier AFTER it (see the
/// top of this file); they carry only inode numbers.
struct Call {
  uid_t uid = 0;
  gid_t gid = 0;
  bool echo = false;  // made by the notifier to raise an Event (events.cpp): answer, change nothing
  struct Inval {
    NodeRef node;
    off_t off = -1, len = 0;  // data from off (len 0: to the end); off -1: attributes only
    std::string name;         // non-empty: the entry `name` in the directory `ino`
  };
  std::vector<Inval> after;
  pid_t pid = 0;  // the caller's thread, as the kernel names it in the request

  void entry_changed(const std::vector<NodeRef>& parents, const char* name) {
    for (const NodeRef& p : parents) after.push_back({p, -1, 0, name});
  }
  void data_changed(const std::vector<NodeRef>& inodes, off_t off, off_t len) {
    for (const NodeRef& i : inodes) after.push_back({i, off, len, {}});
  }
  void attr_changed(const std::vector<NodeRef>& inodes) { data_changed(inodes, -1, 0); }
};

// What ops answer besides an errno, an entry (fuse_entry_param) and a statvfs.
struct NoReply {};  // forget: the kernel expects no answer
struct Attr {
  struct stat st;
  double timeout;
};
struct LinkTarget {
  std::string target;
};
/// How an open file passes through to its backing file (id 0: it does not), for the reply.
struct PassthroughReply {
  int32_t backing = 0;
  bool direct_io = false;  // reads and writes still come to the daemon; mmap passes through
};
struct Opened {
  fuse_file_info fi;  // fh: a FileHandle
  PassthroughReply passthrough;
};
struct OpenedDir {
  fuse_file_info fi;  // fh: a DirHandle, or 0 (a directory the kernel caches the listing of)
};
struct Created {
  fuse_entry_param entry;
  fuse_file_info fi;
  PassthroughReply passthrough;
};
struct FileData {  // `size` bytes of `fd` at `off`, sent by splice where the kernel can
  int fd;
  size_t size;
  off_t off;
};
struct Written {
  size_t size;
};
struct Offset {
  off_t off;
};
struct Bytes {
  std::vector<char> data;
};
struct Xattr {  // size_only: the caller asked for the size (size 0), data is empty
  bool size_only;
  size_t size;
  std::vector<char> data;
};

class Filesystem {
 public:
  explicit Filesystem(Options options = {});
  ~Filesystem();
  Filesystem(const Filesystem&) = delete;
  Filesystem& operator=(const Filesystem&) = delete;

  /// The libfuse op table; userdata must be this Filesystem.
  static const fuse_lowlevel_ops& ops();

  /// The session to send invalidations to (set once the session exists), mounted at
  /// `mountpoint` (events are raised through it; "": none are).
  void attach_session(fuse_session* se, std::string mountpoint = {});
  /// Stops sending invalidations; false if one is still blocked after `patience` (see
  /// Notifier::stop: abort the connection, then call again).
  bool detach_session(std::chrono::milliseconds patience = std::chrono::milliseconds(2000));
  Passthrough& passthrough() { return passthrough_; }
  /// Tests: holds the notifier's thread, counts its flushes (overflows).
  Notifier& notifier() { return notifier_; }
  SessionIo& session_io() { return io_; }
  /// What this daemon may do besides serving its own user (privileges.hpp).
  const Privileges& privileges() const { return privileges_; }
  /// The options as narrowed to what this process may do.
  const Options& options() const { return options_; }
  /// The thread whose requests are echoes (events.cpp); 0 when none runs.
  pid_t echo_tid() const { return notifier_.tid(); }
  /// Records denials and changes to `log` (common/audit.hpp; nullptr: no audit). Set before
  /// the session runs; the log must outlive the session.
  void set_audit(common::AuditLog* log) { audit_ = log; }
  /// Waits until the queued sibling invalidations were sent (tests).
  bool wait_invalidations(std::chrono::milliseconds timeout) { return notifier_.wait_idle(timeout); }

  /// Replaces the served views (a grant changed). Invalidates what the kernel cached of
  /// removed or changed views and of the synthetic directories above them. Returns one line
  /// per view that could not be served.
  std::vector<std::string> set_views(const policy::ViewSpecs& views,
                                     const policy::ViewSpecs& killed = {});
  /// Replaces the views of `apps` only (ViewRegistry::update): `views` are all their views
  /// now, every other app's are served on untouched. The work is in proportion to those apps.
  std::vector<std::string> update_views(const std::set<std::string>& apps, const policy::ViewSpecs& views,
                                        const policy::ViewSpecs& killed = {});

  struct Stats {
    size_t inodes, cached_fds, fd_cache_capacity, views;
    size_t passthrough_files;  // inodes open with a backing file in the kernel
    size_t events_queued;      // change events waiting for or being raised in other views (events.cpp)
  };
  Stats stats();
  /// Each app's open files and inodes now, with its shares (0: no limit), for status.
  struct AppShare {
    size_t open_files = 0, open_files_limit = 0, inodes = 0, inodes_limit = 0;
  };
  std::map<std::string, AppShare> app_shares();
  /// The count of a limit the daemon accounts (quota_account.hpp), by key ("apps/notes"):
  /// nullopt when no view has it, or its first walk is not done.
  std::optional<QuotaCounter::Usage> quota_usage(const std::string& key) const;
  /// "" when every limit is counted, else the first walks' progress (for status).
  [[nodiscard]] std::string quota_progress() const { return quotas_.progress(); }

  // ---- ops ----
  // Each op does its work and returns what to answer: a value, or an errno. The trampolines
  // of ops_table.cpp build the Call from the request, send the one reply (reply.cpp) and then
  // queue the invalidations the op collected. Tests call the ops directly, without a mount.
  void init(fuse_conn_info* conn);
  Result<fuse_entry_param> lookup(Call& call, fuse_ino_t parent, const char* name);
  NoReply forget(Call& call, fuse_ino_t ino, uint64_t nlookup);
  NoReply forget_multi(Call& call, size_t count, fuse_forget_data* forgets);
  Result<Attr> getattr(Call& call, fuse_ino_t ino, fuse_file_info* fi);
  Result<Attr> setattr(Call& call, fuse_ino_t ino, struct stat* attr, int to_set, fuse_file_info* fi);
  Result<LinkTarget> readlink(Call& call, fuse_ino_t ino);
  Result<fuse_entry_param> mknod(Call& call, fuse_ino_t parent, const char* name, mode_t mode, dev_t rdev);
  Result<fuse_entry_param> mkdir(Call& call, fuse_ino_t parent, const char* name, mode_t mode);
  Result<fuse_entry_param> symlink(Call& call, const char* link, fuse_ino_t parent, const char* name);
  Result<fuse_entry_param> link(Call& call, fuse_ino_t ino, fuse_ino_t newparent, const char* newname);
  Result<void> unlink(Call& call, fuse_ino_t parent, const char* name);
  Result<void> rmdir(Call& call, fuse_ino_t parent, const char* name);
  Result<void> rename(Call& call, fuse_ino_t parent, const char* name, fuse_ino_t newparent,
                      const char* newname, unsigned int flags);
  Result<Opened> open(Call& call, fuse_ino_t ino, fuse_file_info* fi);
  Result<Created> create(Call& call, fuse_ino_t parent, const char* name, mode_t mode, fuse_file_info* fi);
  Result<FileData> read(Call& call, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi);
  Result<Written> write_buf(Call& call, fuse_ino_t ino, fuse_bufvec* bufv, off_t off, fuse_file_info* fi);
  Result<void> flush(Call& call, fuse_ino_t ino, fuse_file_info* fi);
  Result<void> fsync(Call& call, fuse_ino_t ino, int datasync, fuse_file_info* fi);
  Result<void> release(Call& call, fuse_ino_t ino, fuse_file_info* fi);
  Result<void> fallocate(Call& call, fuse_ino_t ino, int mode, off_t offset, off_t length,
                         fuse_file_info* fi);
  Result<Offset> lseek(Call& call, fuse_ino_t ino, off_t off, int whence, fuse_file_info* fi);
  Result<Written> copy_file_range(Call& call, fuse_ino_t ino_in, off_t off_in, fuse_file_info* fi_in,
                                  fuse_ino_t ino_out, off_t off_out, fuse_file_info* fi_out,
                                  size_t len, int flags);
  Result<OpenedDir> opendir(Call& call, fuse_ino_t ino, fuse_file_info* fi);
  Result<void> releasedir(Call& call, fuse_ino_t ino, fuse_file_info* fi);
  /// `size` bytes at most of the listing from `off`, as READDIR (plus: READDIRPLUS) wants them.
  Result<Bytes> readdir(Call& call, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi, bool plus);
  Result<void> fsyncdir(Call& call, fuse_ino_t ino, int datasync, fuse_file_info* fi);
  Result<struct statvfs> statfs(Call& call, fuse_ino_t ino);
  Result<void> access(Call& call, fuse_ino_t ino, int mask);
  Result<void> setxattr(Call& call, fuse_ino_t ino, const char* name, const char* value, size_t size,
                        int flags);
  Result<Xattr> getxattr(Call& call, fuse_ino_t ino, const char* name, size_t size);
  Result<Xattr> listxattr(Call& call, fuse_ino_t ino, size_t size);
  Result<void> removexattr(Call& call, fuse_ino_t ino, const char* name);

  // ---- audit (audit.cpp) ----
  /// What one request did, as far as the audit cares: filled by resolve_for() and the ops.
  struct AuditNote {
    policy::Op op = policy::Op::lookup;
    const View* view = nullptr;  // nullptr: not a view's file (nothing to record)
    Inode* inode = nullptr;      // the node, or the directory of `name`
    const char* name = nullptr;
    Inode* to_inode = nullptr;   // rename, link: the destination directory and name
    const char* to_name = nullptr;
    const char* change = nullptr;  // the change's name when it is not op's ("write-close", "chmod")
    std::string detail;
  };
  /// The audit scope of one request (the trampolines of ops_table.cpp): done() with the op's
  /// errno, before the reply, posts the record the note makes, if any.
  class Audited {
   public:
    /// `echo`: the request is an echo of a change already recorded (events.cpp): none.
    Audited(Filesystem& fs, bool echo);
    ~Audited();
    Audited(const Audited&) = delete;
    Audited& operator=(const Audited&) = delete;
    void done(int err);
    /// The journal's fields of this request (the op is "lookup" before resolve_for() noted
    /// one; no app and view above the views).
    [[nodiscard]] common::LogFields fields(int err) const;

   private:
    Filesystem& fs_;
    AuditNote note_;
  };

  // ---- replies (reply.cpp): each sends one answer, then queues call.after ----
  void reply(fuse_req_t req, Call& call, Result<void> r);
  void reply(fuse_req_t req, Call& call, NoReply);
  void reply(fuse_req_t req, Call& call, Result<fuse_entry_param> r);
  void reply(fuse_req_t req, Call& call, Result<Attr> r);
  void reply(fuse_req_t req, Call& call, Result<LinkTarget> r);
  void reply(fuse_req_t req, Call& call, Result<Opened> r);
  void reply(fuse_req_t req, Call& call, Result<OpenedDir> r);
  void reply(fuse_req_t req, Call& call, Result<Created> r);
  void reply(fuse_req_t req, Call& call, Result<FileData> r);
  void reply(fuse_req_t req, Call& call, Result<Written> r);
  void reply(fuse_req_t req, Call& call, Result<Offset> r);
  void reply(fuse_req_t req, Call& call, Result<Bytes> r);
  void reply(fuse_req_t req, Call& call, Result<struct statvfs> r);
  void reply(fuse_req_t req, Call& call, Result<Xattr> r);

 private:
  /// An inode resolved for an op: the inode and its current view (nullptr for synthetic).
  struct Node {
    Inode* inode;
    const View* view;
    [[nodiscard]] bool synthetic() const { return inode->view == kNoView; }
  };
  struct SynthInode;

  Inode* inode_of(fuse_ino_t ino);
  /// ino -> Node (its view nullptr when the view is gone: revoked or removed).
  Node resolve(fuse_ino_t ino);
  /// What policy::decide() is told about a node: hidden, above the views, or a view's access.
  static policy::Target target_of(const Node& node);
  /// resolve() + policy::decide(op) (+ decide_made() in a mode that protects, decide_sidecar()
  /// in a read view with sidecars): the node, or the errno the policy gives. `name`: the entry
  /// an op on a directory acts on (create, mknod, unlink), where the rules ask for it.
  common::Result<Node> resolve_for(fuse_ino_t ino, policy::Op op, const char* name = nullptr);
  /// The same for the two places of link, rename and copy_file_range (source, destination;
  /// a rename's names).
  common::Result<std::pair<Node, Node>> resolve_for(fuse_ino_t from, fuse_ino_t to, policy::Op op,
                                                    const char* from_name = nullptr,
                                                    const char* to_name = nullptr);
  common::Result<FdRef> fd_of(const Node& node);
  /// "N" for /proc/self/fd/N through proc_fd_.
  static std::string fd_name(int fd);

  /// Looks `name` up below a backed directory and registers the entry (nlookup + 1).
  common::Result<fuse_entry_param> lookup_backed(const Node& parent, const char* name);
  /// Registers an O_PATH fd of a just-found/created file as an entry (takes the fd).
  common::Result<fuse_entry_param> make_entry(const View& view, int path_fd, InodeCharge* charge = nullptr);
  fuse_entry_param negative_entry(const View* view) const;
  /// The shared body of mknod, mkdir and symlink, once the policy allowed the op on the parent
  /// `p` (a view): run `make` (a *at call relative to the parent's fd) as the caller's disk
  /// owner, return the entry.
  Result<fuse_entry_param> make_node(Call& call, const Node& p, const char* name,
                                     const std::function<int(int dirfd, const View& view)>& make);

  // Quotas the daemon accounts (quota_account.hpp; the hooks in quota_hooks.cpp).
  /// The counters a new entry of `view` is accounted against: its app's or share's, and the
  /// app's own in the share (quota_account.hpp). Empty for an unlimited view.
  QuotaCounters quota_of(const View& view) const;
  /// The counters changes to the existing file `fd` (or entry `name` of `dir_fd`) of `view`
  /// are accounted against: the app's or share's, and its creator's in the share.
  QuotaCounters quota_of(const View& view, int fd) const;
  QuotaCounters quota_of(const View& view, int dir_fd, const char* name) const;
  /// The same for the file open as `fh`, its creator read once per handle.
  QuotaCounters quota_of(const View& view, FileHandle& fh) const;
  /// One inode more for `view`'s limit, before making it: 0 or EDQUOT.
  int take_inode(const View& view);
  /// Gives back an inode taken for something not made after all.
  void give_inode(const View& view);
  /// All the counters of `view`'s limits, whoever made what: an op that makes, links or moves
  /// names holds their step locks (QuotaSteps) and tells them (quota_entered).
  QuotaCounters quota_all(const View& view) const;
  /// Tells a recount running for `counters` that `entry_fd` has a new name in `dir_fd`, made
  /// there (`made`) or linked or moved there (quota_account.hpp, top).
  static void quota_entered(const QuotaCounters& counters, int dir_fd, int entry_fd, bool made);
  /// Gives the counters the limited views now served (set_views).
  void update_quotas();
  /// What set_views() owes the kernel: the names of synthetic dirs that changed, and the
  /// cached attributes and pages of changed, killed and removed views.
  void invalidate_changed(fuse_session* se, const ViewRegistry::Change& change, const Layout& old_layout,
                          const Layout& new_layout);
  /// Marks, for the host watch, each file system that holds a view of `added` (once each).
  void watch_hosts(const std::vector<ViewId>& added);
  void track_host_roots(const ViewRegistry::Change& change);  // host_roots_ after a change
  /// What set_views() and update_views() do once the registry changed (`all`: every view).
  void views_changed(const ViewRegistry::Change& change, const Layout& old_layout, bool all);
  /// A change made on the host: the limits whose trees it is in are counted again.
  void quota_host_changed(const HostChange& c);
  /// statfs of a limited view: its limit as the size, its room as free.
  void limit_statfs(const View& view, struct statvfs& sv) const;

  // Provenance and the grant modes that protect (provenance.cpp).
  /// Whether `view` records which app makes and changes its files (shared and host views).
  bool records(const View& view) const;
  /// Who made the file behind `fd` (any fd of it), as `view`'s app sees it.
  static policy::Maker maker_of(const View& view, int fd);
  /// policy::decide_made(op) for the file behind `fd` (any fd of it): 0 or an errno; its
  /// provenance is read only when the answer depends on it.
  static int decide_made_for(const View& view, int fd, policy::Op op);
  /// The same for `node` (no syscall when its view's mode can't refuse `op`).
  int check_made(const Node& node, policy::Op op);
  /// The same for a setattr of `node` (`fd`: its O_PATH fd) to `size` when that shortens it
  /// (a truncation).
  int check_shortening(const Node& node, int fd, off_t size);
  /// The same for the entry `name` of the directory `dirfd` (0 if there is none).
  static int check_entry(const View& view, int dirfd, const char* name, policy::Op op);
  /// policy::shows() for the file behind `fd`, or the entry `name` of `dirfd`.
  static bool shown(const View& view, int fd);
  static bool shown(const View& view, int dirfd, const char* name);
  /// Whether `node` is in a read view with sidecar patterns (ViewSpec::sidecars).
  static bool has_sidecars(const Node& node) { return node.view && !node.view->spec.sidecars.empty(); }
  /// policy::decide_sidecar() for `op` on `node` (create, mknod, unlink: on its entry `name`).
  int check_sidecar(const Node& node, policy::Op op, const char* name);
  /// ...for a rename (within one view) of `name` in `from` to `new_name` in `to`.
  int check_sidecar_rename(const Node& from, const char* name, const Node& to, const char* new_name);
  /// Records `view`'s app as the maker, or the last to change, the file behind `fd`.
  void record_made(const View& view, int fd);
  void record_changed(const View& view, int fd);
  /// record_changed() once for the writes made through `fh` since the last call (ops_file.cpp);
  /// whether there were any.
  bool record_writes(fuse_ino_t ino, FileHandle& fh);

  // Change events in sibling views (events.cpp). The note_* calls queue them (nothing when no
  // other view shows the directory or file).
  /// false: not queued (no session, or too many queued), the caller invalidates instead.
  bool post(Event e);
  /// note_created() and note_moved() return whether the echoes stand for the invalidations of
  /// the names in every sibling view (they do their own: an invalidation after the echo would
  /// drop the entry it made, and the inode the view's next events need).
  bool note_created(const Node& dir, const char* name, mode_t type, fuse_ino_t made);
  void note_deleted(const Inode* dir, const char* name, mode_t type);
  /// After a rename (not an exchange) of `name` in `from` (fd `from_fd`) to `to_name` in `to`.
  bool note_moved(const Inode* from, const char* name, const Inode* to, int to_fd,
                  const char* to_name);
  void note_file(Event::Kind kind, const Inode* file);
  /// Whether another view shows `inode`, or may soon (fresh_).
  bool watched(const Inode* inode);
  /// Raises `e` through the mount in every sibling view (on the notifier's thread).
  void raise(const Event& e);
  /// ...in the sibling directory `e.dir` (and `e.to_dir`).
  void raise_in_dir(const Event& e);
  void raise_on_file(Event::Kind kind, Event::Node file);
  /// Only invalidates `e.name` in `e.dir` (a view that has the entry already).
  void forget_name(const Event& e);
  /// The echo being raised, if this call is one (a copy: null when it is not).
  std::optional<Event> echo_now();
  /// The answers to an echo's requests.
  Result<fuse_entry_param> echo_lookup(fuse_ino_t parent, const char* name);
  Result<fuse_entry_param> echo_made(fuse_ino_t parent, const char* name);
  /// The stand-in for a file `e` names that is gone already (see events.cpp).
  Result<fuse_entry_param> stand_in(const Node& dir, const Event& e);
  /// Opens a node of the mount by its id (the kernel must hold it); -1 with errno if not.
  int open_node(Event::Node node, int flags);
  /// The mount's root, for open_node() (the notifier's thread: the open waits for the loop).
  void open_echo_mount();
  /// At the notifier's end: closes the echoes' open files and the mount.
  void end_echoes();
  /// A change made on the host (HostWatch's thread): invalidations and echoes, queued.
  void host_changed(HostChange& c);
  /// After lost host events: every name and inode the kernel cached (the notifier's thread).
  void invalidate_all();
  /// A served directory on file system `dev` (for HostWatch): one of host_roots_.
  std::shared_ptr<const common::UniqueFd> root_on(dev_t dev);

  // A share's trash (trash.cpp; policy/trash.hpp).
  /// Removes the entry `name` of `dirfd` in `view` as unlink (`dir` false) or rmdir would,
  /// with the same errors: into the view's trash when it has one, else for good. 0 or errno.
  static int remove_entry(const View& view, int dirfd, const char* name, bool dir);
  /// Before a rename in `view` of `from_dirfd`/`from_name` onto `dirfd`/`name`: the trash id
  /// of a hard link of the file it will replace, put in the trash; "" when nothing is kept
  /// (then the rename replaces it for good). The caller drops it (drop_kept) if the rename fails.
  static std::string keep_replaced(const View& view, int from_dirfd, const char* from_name, int dirfd,
                                   const char* name);
  static void drop_kept(const View& view, const std::string& id);

  // Audit notes of the current request (audit.cpp; no-ops when the audit is off).
  static void note_node(const Node& node, policy::Op op, const char* name);
  static void note_nodes(const Node& from, const Node& to, policy::Op op, const char* from_name,
                         const char* to_name);
  /// A change that is not an op of its own (a handle that wrote, closed).
  static void note_change(const Node& node, const char* change, std::string detail = {});
  /// What a setattr changes (chmod, chown, truncate, utimes), for its record.
  static void note_setattr(int to_set, const struct stat& attr);
  /// A read in a view that audits them (ViewSpec::audit_reads), recorded as `what` ("open-read",
  /// "readdir") if the op succeeds.
  static void note_read(const char* what);
  /// Whether the current request is audited (the audit is on, and it is not an echo).
  bool audited() const;
  /// At the end of a listing in a view that audits reads: drops the kernel's cached listing
  /// of the directory `dir`, so that the next one comes here too (ops_dir.cpp).
  void forget_listing(const Inode* dir);
  /// Options::dir_streams: a listing of `dir` read from the backing begins (READDIRPLUS at 0).
  void note_listed(const Inode* dir);
  /// Whether the last listing of `dir` read from the backing began less than `seconds` ago.
  bool listed_within(const Inode* dir, double seconds);
  /// `name` in (or, without a name, the node) `inode` of `view`, as a path below its root.
  std::string view_path(const View& view, Inode* inode, const char* name);
  void audit_outcome(const AuditNote& note, int err);

  // Synthetic directories (synthetic.cpp).
  SynthInode* synth_inode(const std::string& path);
  SynthInode* find_synth(const std::string& path);
  Result<fuse_entry_param> synth_lookup(const SynthInode& dir, const char* name);
  struct stat synth_stat(const SynthInode& dir) const;
  std::vector<DirEntry> synth_listing(const SynthInode& dir);

  // readdir's two kinds of directory (ops_dir.cpp).
  Bytes synth_readdir(const SynthInode& dir, size_t size, off_t off, bool plus);
  /// `h`: the kernel's open of the directory (Options::dir_streams), nullptr without one.
  Result<Bytes> backed_readdir(const Node& n, size_t size, off_t off, bool plus, DirHandle* h);
  /// Adds one entry of a backed directory `dfd` to `out`, if the view shows it: false when it
  /// did not fit.
  bool add_backed(const Node& n, int dfd, const struct dirent64& entry, bool plus, DirListing& out);

  // Coherence: the other views' inodes of the same backing file (see Call).
  using Siblings = std::vector<NodeRef>;
  Siblings siblings_of(const Inode* inode);
  /// Queues what `call` collected for the notifier (after the reply).
  void send_after(Call& call) noexcept;
  /// Sets how the kernel serves an open file: through its backing file (if the kernel can;
  /// the returned value goes into the reply), else from the page cache or, for files with
  /// siblings, by the daemon.
  PassthroughReply set_io_mode(fuse_file_info* fi, const View& view, FileHandle& fh, pid_t opener);
  /// An echo's open of a file open with a backing: it must pass through too (ops_file.cpp).
  PassthroughReply echo_backing(fuse_ino_t ino, fuse_file_info* fi);
  /// Whether the open files of `view` pass through to their backing files (in a shared view,
  /// their reads and mmaps: set_io_mode). Not for a limited view: the daemon must see every
  /// write to account it (quota_account.hpp).
  bool passes_through(const View& view) const {
    return view.spec.quotas.empty() && passthrough_.active();
  }
  /// Frees a handle the kernel will not release (its open reply was not delivered) or did.
  void close_handle(std::unique_ptr<FileHandle> fh);
  /// Seconds the kernel may keep a name of `view` (nullptr: above the views) and the
  /// attributes of its `inode`: none for a file with siblings.
  double entry_timeout(const View* view) const;
  /// Names each view's app to the inode shares (set_views).
  void bind_inode_shares(const std::vector<ViewId>& added);
  double attr_timeout(const View& view, const Inode* inode) const;

  const Privileges privileges_;  // before options_: they narrow it
  const Options options_;
  InodeShares inode_shares_{options_.inodes_per_app, options_.inodes_of};  // before table_: it charges them
  InodeTable table_;
  ViewRegistry views_;
  common::UniqueFd proc_fd_;  // /proc/self/fd, for re-opening O_PATH fds
  std::atomic<fuse_session*> se_{nullptr};
  Notifier notifier_;
  // events.cpp: the echo being raised (guarded by echo_mutex_); the rest is the notifier's own.
  std::mutex echo_mutex_;
  std::optional<Event> echo_;
  std::unordered_set<const Inode*> modify_queued_;  // a modified echo is queued for these
  // New files whose created echo is queued: their writes are echoed though they have no
  // sibling yet (it appears with the created echo). fresh_n_: its size, read without the lock.
  std::unordered_set<const Inode*> fresh_;
  std::atomic<size_t> fresh_n_{0};
  std::atomic<size_t> queued_{0};  // echoes waiting for the notifier or running
  std::atomic<bool> lost_{false};  // some were dropped (queue full) since the queue was last empty
  std::string mountpoint_;
  common::UniqueFd echo_mount_;
  std::unordered_map<fuse_ino_t, common::UniqueFd> echo_open_;  // written files: see modified
  /// The view roots served, by file system, for root_on: kept up to date by each change
  /// (track_host_roots), so a host event finds a root without walking every view, and a file
  /// system none is served from any more (a share's disk) is held by none.
  std::mutex host_roots_mutex_;
  std::map<dev_t, std::map<ViewId, std::shared_ptr<const common::UniqueFd>>> host_roots_;
  std::unordered_map<ViewId, dev_t> host_root_dev_;
  HostWatch host_watch_;  // after what its thread uses: stopped first
  SessionIo io_;
  Passthrough passthrough_{io_};
  OpenShares open_shares_{options_.open_files_per_app, options_.open_files_of};
  bool no_opendir_ = false;  // set by init(): the kernel can do without OPENDIR
  // Options::dir_streams: when each directory's last listing read from the backing began
  // (ops_dir.cpp, opendir: the kernel may serve a listing from its cache shortly after).
  struct Listed {
    uint32_t generation;
    std::chrono::steady_clock::time_point at;
  };
  std::mutex listed_mutex_;
  std::unordered_map<const Inode*, Listed> listed_;
  common::AuditLog* audit_ = nullptr;

  QuotaAccounts quotas_;  // its walking thread reads views' root fds (dup'd): stopped before views_ go
  OpenHandles<FileHandle> files_;  // before table_ is gone: a FileHandle names an Inode
  OpenHandles<DirHandle> dirs_;

  std::mutex synth_mutex_;
  std::map<std::string, std::unique_ptr<SynthInode>> synth_;  // by path; never freed
  SynthInode* root_ = nullptr;
};

}  // namespace portalfs::fuse
