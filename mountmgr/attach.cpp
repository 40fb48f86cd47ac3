// SPDX-License-Identifier: MIT
#include "mountmgr/attach.hpp"

#include <fcntl.h>
#include <sched.h>
#include <sys/fsuid.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <optional>
#include <sstream>
#include <stdexcept>

#include "common/unique_fd.hpp"

namespace portalfs::mountmgr {
namespace {

using common::UniqueFd;

// What the forked child was doing when it failed; it sends one of these through a pipe (a
// fixed-size record, because the child must not allocate: see run_in_namespace()).
enum class Step : int32_t { setns, umount_old, stat, mkdir, move_mount, umount };

struct ChildError {
  Step step = Step::setns;
  int32_t err = 0;
  int32_t index = -1;   // which bind / target; -1: none
  int32_t prefix = -1;  // Step::stat, Step::mkdir: which directory of the bind's target
};

const char* step_name(Step step) {
  switch (step) {
    case Step::setns:
      return "setns";
    case Step::umount_old:
      return "umount2 (of the mount already there)";
    case Step::stat:
      return "stat";
    case Step::mkdir:
      return "mkdir";
    case Step::move_mount:
      return "move_mount";
    case Step::umount:
      return "umount2";
  }
  return "?";
}

/// A target path checked and split before the fork: "/a/b/c" -> {"/a", "/a/b", "/a/b/c"}. The
/// last entry is the normalised target. Empty when the path is not acceptable.
std::vector<std::string> target_prefixes(const std::string& target) {
  std::vector<std::string> out;
  if (target.empty() || target.front() != '/') return {};
  std::string current;
  std::istringstream parts(target);
  std::string part;
  while (std::getline(parts, part, '/')) {
    if (part.empty()) continue;
    if (part == "." || part == "..") return {};
    current += "/" + part;
    out.push_back(current);
  }
  return out;  // "/" itself yields nothing: mounting over a container's root is refused
}

/// /proc/PID as a directory fd. Whatever is opened through it belongs to that one process: once
/// the process is gone, lookups through it fail, even after the pid was given to another one.
UniqueFd open_proc_dir(int pid) {
  if (pid <= 0) return {};
  const std::string path = "/proc/" + std::to_string(pid);
  return UniqueFd(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
}

/// A small file below a /proc/PID directory fd (one read: /proc files come whole); nullopt when
/// it can't be read.
std::optional<std::string> read_proc_file(int dir, const char* name) {
  UniqueFd fd(::openat(dir, name, O_RDONLY | O_CLOEXEC));
  if (!fd) return std::nullopt;
  char buf[4096];
  ssize_t n;
  do {
    n = ::read(fd.get(), buf, sizeof(buf));
  } while (n < 0 && errno == EINTR);
  if (n < 0) return std::nullopt;
  return std::string(buf, static_cast<std::size_t>(n));
}

/// The start time (field 22 of stat) of the process at `dir`; nullopt when it is gone or a
/// zombie (its pid may be handed out again at any moment).
std::optional<uint64_t> read_start_time(int dir) {
  const auto stat = read_proc_file(dir, "stat");
  if (!stat) return std::nullopt;
  // "PID (comm) S ppid ...": comm may itself hold ')' and spaces, so fields are counted from
  // the last ')': the state is field 3, the start time field 22.
  const auto close = stat->rfind(')');
  if (close == std::string::npos) return std::nullopt;
  std::istringstream fields(stat->substr(close + 1));
  std::string field;
  for (int number = 3; fields >> field; ++number) {
    if (number == 3 && (field == "Z" || field == "X" || field == "x")) return std::nullopt;
    if (number != 22) continue;
    uint64_t ticks = 0;
    auto [end, ec] = std::from_chars(field.data(), field.data() + field.size(), ticks);
    if (ec != std::errc() || end != field.data() + field.size()) return std::nullopt;
    return ticks;
  }
  return std::nullopt;
}

/// This boot's id ("" if unreadable: then every identity has the same one).
const std::string& boot_id() {
  static const std::string id = [] {
    std::ifstream in("/proc/sys/kernel/random/boot_id");
    std::string line;
    std::getline(in, line);
    return line;
  }();
  return id;
}

/// The identity of the process at `dir` whose mount namespace is the open `ns`. The start time
/// is read after `ns` was opened: a pid is not reused while its process lives, so if the start
/// time is still the recorded one, `ns` came from the recorded process.
std::optional<ProcessIdentity> identity_of(int pid, int dir, int ns) {
  struct stat st {};
  if (::fstat(ns, &st) != 0) return std::nullopt;
  const auto start = read_start_time(dir);
  if (!start) return std::nullopt;
  return ProcessIdentity{pid, *start, static_cast<uint64_t>(st.st_dev), static_cast<uint64_t>(st.st_ino),
                         boot_id()};
}

/// The host id that id 0 inside the user namespace of the process at `dir` maps to, from its
/// uid_map or gid_map; 0 when it has no user namespace of its own (or the map is unreadable).
uint32_t host_id_of_root(int dir, const char* map) {
  std::istringstream in(read_proc_file(dir, map).value_or(""));
  uint64_t inside = 0;
  uint64_t outside = 0;
  uint64_t count = 0;
  while (in >> inside >> outside >> count) {
    if (inside == 0 && count > 0) return static_cast<uint32_t>(outside);
  }
  return 0;
}

/// The identity of a mount namespace file, to tell the daemon's own namespace apart.
std::optional<std::pair<dev_t, ino_t>> ns_identity(int fd) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) return std::nullopt;
  return std::make_pair(st.st_dev, st.st_ino);
}

/// The recorded process, opened: its /proc directory and the mount namespace setns will enter.
struct OpenedProcess {
  UniqueFd dir;
  UniqueFd ns;
};

/// Opens the mount namespace of `expected` and checks that it is the recorded one, of the
/// recorded process; throws std::runtime_error ("WHAT: problem") otherwise.
OpenedProcess open_mount_ns(const ProcessIdentity& expected, const std::string& what) {
  OpenedProcess p;
  p.dir = open_proc_dir(expected.pid);
  if (!p.dir) throw std::runtime_error(what + ": no such process");
  p.ns.reset(::openat(p.dir.get(), "ns/mnt", O_RDONLY | O_CLOEXEC));
  if (!p.ns) {
    const int err = errno;
    // ENOENT: a zombie, or the process exited after its directory was opened.
    throw std::runtime_error(what + (err == ENOENT || err == ESRCH
                                         ? std::string(": no such process")
                                         : ": open /proc/" + std::to_string(expected.pid) + "/ns/mnt: " +
                                               std::strerror(err)));
  }
  // The pid may belong to another process by now (the record is from before a daemon restart),
  // or the process may have moved to another namespace: the fd setns will use is checked, not
  // the pid.
  if (auto change = identity_change(expected, identity_of(expected.pid, p.dir.get(), p.ns.get()));
      !change.empty()) {
    throw std::runtime_error(what + ": " + change);
  }
  // Moving views into (or detaching them from) the daemon's own namespace would cover host
  // directories: a pid outside any container is a mistake, not a request.
  UniqueFd self(::open("/proc/self/ns/mnt", O_RDONLY | O_CLOEXEC));
  if (self && ns_identity(self.get()) == ns_identity(p.ns.get())) {
    throw std::runtime_error(what + ": the process is in portalfsd's own mount namespace (not in a container)");
  }
  return p;
}

/// Forks a child that enters `ns_fd`'s mount namespace and runs `body`, which returns false
/// after filling in the ChildError. Returns the child's error; a parent-side failure throws
/// std::runtime_error ("WHAT: problem").
///
/// Why a child: setns(CLONE_NEWNS) refuses a multi-threaded process (EINVAL), and the daemon has
/// FUSE and control threads; the child of fork() has one thread. It must use only
/// async-signal-safe calls (another thread may have held the malloc lock at the fork), so every
/// string it needs is built before the fork and it allocates nothing.
template <typename Body>
std::optional<ChildError> run_in_namespace(int ns_fd, const std::string& what, Body body) {
  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0) throw std::runtime_error(what + ": pipe: " + std::strerror(errno));
  UniqueFd read_end(pipe_fds[0]);
  UniqueFd write_end(pipe_fds[1]);

  pid_t child = ::fork();
  if (child < 0) throw std::runtime_error(what + ": fork: " + std::strerror(errno));
  if (child == 0) {
    ChildError error;
    bool ok = true;
    if (::setns(ns_fd, CLONE_NEWNS) != 0) {
      error = ChildError{Step::setns, errno, -1, -1};
      ok = false;
    } else {
      ok = body(error);
    }
    if (!ok) {
      ssize_t ignored = ::write(write_end.get(), &error, sizeof(error));
      (void)ignored;
    }
    ::_exit(ok ? 0 : 1);
  }

  write_end.reset();
  ChildError error;
  ssize_t n;
  do {
    n = ::read(read_end.get(), &error, sizeof(error));
  } while (n < 0 && errno == EINTR);
  int status = 0;
  while (::waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }
  if (n == static_cast<ssize_t>(sizeof(error))) return error;
  if (WIFSIGNALED(status)) {
    throw std::runtime_error(what + ": helper process killed by signal " + std::to_string(WTERMSIG(status)));
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    throw std::runtime_error(what + ": helper process failed without a report");
  }
  return std::nullopt;
}

struct PreparedBind {
  UniqueFd tree;                      // the detached clone, attributes already set
  std::vector<std::string> prefixes;  // every directory down to the target (the last one)
};

/// Everything that can be done in the host namespace, in the daemon: clones each source and
/// sets its flags on the detached clone (so the mount is never visible without
/// nosuid,nodev,ro), and builds every path the child will need. Throws std::runtime_error.
std::vector<PreparedBind> prepare_binds(const std::vector<Bind>& binds, const std::string& into) {
  std::vector<PreparedBind> prepared;
  prepared.reserve(binds.size());
  for (const auto& bind : binds) {
    const std::string what = "attach " + bind.target + into;
    PreparedBind p;
    p.prefixes = target_prefixes(bind.target);
    if (p.prefixes.empty()) {
      throw std::runtime_error(what + ": expected an absolute target path other than / without . or .. components");
    }
    p.tree.reset(::open_tree(AT_FDCWD, bind.source.c_str(), OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC));
    if (!p.tree) throw std::runtime_error(what + ": open_tree " + bind.source + ": " + std::strerror(errno));
    mount_attr attr{};
    attr.attr_set = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
    if (bind.read_only) attr.attr_set |= MOUNT_ATTR_RDONLY;
    // The clone would otherwise join the source's peer group when the FUSE mount is shared,
    // and mounts made below it in the container would propagate back to the host.
    attr.propagation = MS_PRIVATE;
    if (::mount_setattr(p.tree.get(), "", AT_EMPTY_PATH, &attr, sizeof(attr)) != 0) {
      throw std::runtime_error(what + ": mount_setattr: " + std::strerror(errno));
    }
    prepared.push_back(std::move(p));
  }
  return prepared;
}

/// Who creates missing target directories in the container. In a user-namespaced container,
/// directories the host's root creates are owned by an id the container's filesystems may not
/// map (tmpfs: EOVERFLOW); they are created as the container's root instead.
struct CreatorIds {
  uid_t uid = 0;
  gid_t gid = 0;
  [[nodiscard]] bool switch_needed() const { return uid != 0 || gid != 0; }
};

/// mkdir -p of `p`'s target, in the forked child (syscalls only). Directories on the way may be
/// symlinks inside the container (stat follows them); the target itself must be a real
/// directory (move_mount would say only EINVAL). Switches the fs ids to `ids` before the first
/// mkdir; `switched` tells whether it did.
bool make_target_dirs(const PreparedBind& p, int32_t index, CreatorIds ids, bool& switched, ChildError& e) {
  const std::size_t last = p.prefixes.size() - 1;
  for (std::size_t j = 0; j <= last; ++j) {
    const char* dir = p.prefixes[j].c_str();
    struct stat st {};
    int err = 0;
    Step step = Step::stat;
    int rc = j == last ? ::lstat(dir, &st) : ::stat(dir, &st);
    if (rc == 0) {
      if (S_ISDIR(st.st_mode)) continue;
      err = ENOTDIR;
    } else if (errno != ENOENT) {
      err = errno;
    } else {
      if (ids.switch_needed() && !switched) {
        ::setfsgid(ids.gid);
        ::setfsuid(ids.uid);
        switched = true;
      }
      if (::mkdir(dir, 0755) == 0 || errno == EEXIST) continue;
      err = errno;
      step = Step::mkdir;
    }
    e = ChildError{step, err, index, static_cast<int32_t>(j)};
    return false;
  }
  return true;
}

/// Mounts every prepared bind at its target, in the forked child (syscalls only).
bool mount_prepared(const std::vector<PreparedBind>& prepared, CreatorIds ids, ChildError& e) {
  for (std::size_t i = 0; i < prepared.size(); ++i) {
    const auto idx = static_cast<int32_t>(i);
    const auto& p = prepared[i];
    const char* target = p.prefixes.back().c_str();
    // Replace what is mounted there: after a daemon crash, a dead FUSE bind. EINVAL: not a
    // mount point; ENOENT/ENOTDIR: the path does not exist (yet).
    if (::umount2(target, MNT_DETACH | UMOUNT_NOFOLLOW) != 0 && errno != EINVAL && errno != ENOENT &&
        errno != ENOTDIR) {
      e = ChildError{Step::umount_old, errno, idx, -1};
      return false;
    }
    bool switched = false;
    if (!make_target_dirs(p, idx, ids, switched, e)) return false;
    if (switched) {
      // Back to root for move_mount (setfsuid(0) restores the fs capabilities).
      ::setfsuid(0);
      ::setfsgid(0);
    }
    if (::move_mount(p.tree.get(), "", AT_FDCWD, target, MOVE_MOUNT_F_EMPTY_PATH) != 0) {
      e = ChildError{Step::move_mount, errno, idx, -1};
      return false;
    }
  }
  return true;
}

/// The one line for what the child reported: the bind, the step, the directory, the errno.
std::string describe_attach_error(const ChildError& e, const std::vector<Bind>& binds,
                                  const std::vector<PreparedBind>& prepared, const std::string& into) {
  std::string msg = "attach";
  if (e.index >= 0) msg += " " + binds[static_cast<std::size_t>(e.index)].target;
  msg += into + ": " + step_name(e.step);
  if ((e.step == Step::stat || e.step == Step::mkdir) && e.index >= 0 && e.prefix >= 0) {
    msg += " " + prepared[static_cast<std::size_t>(e.index)].prefixes[static_cast<std::size_t>(e.prefix)];
  }
  return msg + ": " + std::strerror(e.err);
}

}  // namespace

void attach_binds(const ProcessIdentity& process, const std::vector<Bind>& binds) {
  const std::string into = " into pid " + std::to_string(process.pid);
  if (binds.empty()) return;
  const OpenedProcess opened = open_mount_ns(process, "attach" + into);
  const std::vector<PreparedBind> prepared = prepare_binds(binds, into);
  const CreatorIds ids{static_cast<uid_t>(host_id_of_root(opened.dir.get(), "uid_map")),
                       static_cast<gid_t>(host_id_of_root(opened.dir.get(), "gid_map"))};

  auto child_error = run_in_namespace(opened.ns.get(), "attach" + into,
                                      [&prepared, ids](ChildError& e) { return mount_prepared(prepared, ids, e); });
  if (child_error) throw std::runtime_error(describe_attach_error(*child_error, binds, prepared, into));
}

void detach_binds(const ProcessIdentity& process, const std::vector<std::string>& targets) {
  const std::string from = " from pid " + std::to_string(process.pid);
  if (targets.empty()) return;
  const OpenedProcess opened = open_mount_ns(process, "detach" + from);

  std::vector<std::string> normalised;
  normalised.reserve(targets.size());
  for (const auto& t : targets) {
    auto prefixes = target_prefixes(t);
    if (prefixes.empty()) {
      throw std::runtime_error("detach " + t + from +
                               ": expected an absolute target path other than / without . or .. components");
    }
    normalised.push_back(prefixes.back());
  }

  // Children first (the reverse of the parents-first order binds are given in); every target
  // is tried, the first failure is reported.
  auto body = [&normalised](ChildError& e) {
    bool ok = true;
    for (std::size_t i = normalised.size(); i-- > 0;) {
      if (::umount2(normalised[i].c_str(), MNT_DETACH | UMOUNT_NOFOLLOW) == 0) continue;
      if (errno == EINVAL || errno == ENOENT) continue;  // nothing mounted there
      if (ok) e = ChildError{Step::umount, errno, static_cast<int32_t>(i), -1};
      ok = false;
    }
    return ok;
  };

  auto child_error = run_in_namespace(opened.ns.get(), "detach" + from, body);
  if (!child_error) return;
  const ChildError& e = *child_error;
  std::string msg = "detach";
  if (e.index >= 0) msg += " " + targets[static_cast<std::size_t>(e.index)];
  throw std::runtime_error(msg + from + ": " + step_name(e.step) + ": " + std::strerror(e.err));
}

std::optional<ProcessIdentity> identify_process(int pid) {
  const UniqueFd dir = open_proc_dir(pid);
  if (!dir) return std::nullopt;
  const UniqueFd ns(::openat(dir.get(), "ns/mnt", O_RDONLY | O_CLOEXEC));
  if (!ns) return std::nullopt;
  return identity_of(pid, dir.get(), ns.get());
}

std::string identity_change(const ProcessIdentity& recorded, const std::optional<ProcessIdentity>& now) {
  if (!now) return "no such process";
  if (now->boot_id != recorded.boot_id) {
    return "pid " + std::to_string(recorded.pid) + " is another process now (recorded before a reboot: boot " +
           recorded.boot_id + ", now " + now->boot_id + ")";
  }
  if (now->start_time != recorded.start_time) {
    return "pid " + std::to_string(recorded.pid) + " is another process now (started at tick " +
           std::to_string(now->start_time) + ", the recorded one at tick " +
           std::to_string(recorded.start_time) + ")";
  }
  if (now->mnt_ns_dev != recorded.mnt_ns_dev || now->mnt_ns_ino != recorded.mnt_ns_ino) {
    return "the process is in another mount namespace now (" + format_mnt_ns(*now) + ", recorded " +
           format_mnt_ns(recorded) + ")";
  }
  return "";
}

std::string format_mnt_ns(const ProcessIdentity& process) {
  return std::to_string(process.mnt_ns_dev) + ":" + std::to_string(process.mnt_ns_ino);
}

}  // namespace portalfs::mountmgr
