// SPDX-License-Identifier: MIT
#include "mountmgr/state_store.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <optional>

#include "common/dirs.hpp"
#include "common/escape.hpp"
#include "common/log.hpp"
#include "mountmgr/json_reader.hpp"

namespace portalfs::mountmgr {
namespace {

using common::UniqueFd;

constexpr const char* kState = "state.json";
constexpr const char* kBackup = "state.json.bak";
constexpr const char* kTemp = "state.json.tmp";
constexpr const char* kBackupTemp = "state.json.bak.tmp";
constexpr const char* kCorrupt = "state.json.corrupt";
constexpr const char* kLock = "state.lock";
// A state document is a few KiB per app; anything near this is not ours.
constexpr off_t kMaxStateBytes = off_t{64} << 20;
constexpr auto kRecoveryHint =
    "; start with --recover-from-backup to use state.json.bak, or move the file away to start empty";

std::string errno_text(int err) { return std::strerror(err); }

// The outcome of reading one state file: missing, a good state, or why it is bad.
struct ReadOutcome {
  bool missing = false;
  std::optional<State> state;
  std::string problem;
};

ReadOutcome read_state_file(int dir_fd, const char* name) {
  ReadOutcome out;
  // O_NOFOLLOW: save() replaces state.json by rename, so a symlink there would be silently
  // replaced; refuse it now instead of reading through it.
  UniqueFd fd(::openat(dir_fd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK));
  if (!fd) {
    if (errno == ENOENT) {
      out.missing = true;
    } else if (errno == ELOOP) {
      out.problem = "is a symbolic link, not a regular file";
    } else {
      out.problem = "cannot open: " + errno_text(errno);
    }
    return out;
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) {
    out.problem = "cannot stat: " + errno_text(errno);
    return out;
  }
  if (S_ISDIR(st.st_mode)) {
    out.problem = "is a directory, not a regular file";
    return out;
  }
  if (!S_ISREG(st.st_mode)) {
    out.problem = "is not a regular file";
    return out;
  }
  if (st.st_size > kMaxStateBytes) {
    out.problem = "is " + std::to_string(st.st_size) + " bytes, too large to be a state file";
    return out;
  }
  std::string text;
  char buf[65536];
  while (true) {
    const ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      out.problem = "cannot read: " + errno_text(errno);
      return out;
    }
    if (n == 0) break;
    text.append(buf, static_cast<std::size_t>(n));
    if (static_cast<off_t>(text.size()) > kMaxStateBytes) {
      out.problem = "is too large to be a state file";
      return out;
    }
  }
  if (text.empty()) {
    out.problem = "is empty (a torn write?)";
    return out;
  }
  nlohmann::json doc;
  try {
    doc = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    std::string_view reason = e.what();
    if (auto end = reason.find("] "); reason.starts_with("[json.exception.") && end != std::string_view::npos) {
      reason.remove_prefix(end + 2);
    }
    out.problem = "is not valid JSON (torn or corrupt): " + std::string(reason);
    return out;
  }
  try {
    out.state = state_from_json(doc);
  } catch (const FieldError& e) {
    // A key in the pointer may hold a newline: escaped, the message stays one line.
    out.problem = e.pointer().empty() ? e.problem() : common::escape_for_message(e.pointer()) + ": " + e.problem();
  }
  return out;
}

bool write_all(int fd, const std::string& data) {
  std::size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    done += static_cast<std::size_t>(n);
  }
  return true;
}

}  // namespace

StateStore::StateStore(std::string state_dir) : dir_(std::move(state_dir)) {
  // Root's alone: state.json names every app, grant and attached process.
  if (auto err = common::make_dirs(dir_, 0700); !err.empty()) {
    throw StateError(dir_ + ": cannot create the state directory: " + err);
  }
  dir_fd_.reset(::open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dir_fd_) throw StateError(dir_ + ": cannot open the state directory: " + errno_text(errno));

  const std::string lock_path = dir_ + "/" + kLock;
  lock_fd_.reset(::openat(dir_fd_.get(), kLock, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (!lock_fd_) throw StateError(lock_path + ": cannot open the lock file: " + errno_text(errno));
  if (::flock(lock_fd_.get(), LOCK_EX | LOCK_NB) != 0) {
    if (errno == EWOULDBLOCK) {
      std::string holder;
      char buf[32] = {};
      if (::pread(lock_fd_.get(), buf, sizeof buf - 1, 0) > 0) {
        holder = std::string(buf);
        holder.erase(holder.find_last_not_of(" \n") + 1);
      }
      throw StateError(lock_path + ": another portalfsd" + (holder.empty() ? "" : " (pid " + holder + ")") +
                       " is using the state directory " + dir_ +
                       "; stop it first, or give this one another --state-dir");
    }
    throw StateError(lock_path + ": cannot lock: " + errno_text(errno));
  }
  // Who holds the lock, for the message above; best effort.
  const std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(lock_fd_.get(), 0) == 0) (void)!::pwrite(lock_fd_.get(), pid.data(), pid.size(), 0);
}

StateFileCheck check_state_file(const std::string& state_dir) {
  StateFileCheck out;
  out.path = state_dir + "/" + kState;
  UniqueFd dir(::open(state_dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dir) {
    out.missing = errno == ENOENT;
    if (!out.missing) out.problem = "cannot open its directory: " + errno_text(errno);
    return out;
  }
  ReadOutcome read = read_state_file(dir.get(), kState);
  out.missing = read.missing;
  out.problem = read.problem;
  return out;
}

StateStore::Loaded StateStore::load(bool recover_from_backup) {
  Loaded loaded;
  ReadOutcome main = read_state_file(dir_fd_.get(), kState);
  if (main.missing) {
    loaded.state = fresh_state();
    loaded.fresh = true;
    current_is_good_ = false;
    return loaded;
  }
  if (main.state) {
    if (recover_from_backup) {
      common::log(common::LogLevel::info, path() + " is good; --recover-from-backup is not needed and was ignored");
    }
    loaded.state = std::move(*main.state);
    current_is_good_ = true;
    return loaded;
  }
  if (!recover_from_backup) throw StateError(path() + ": " + main.problem + kRecoveryHint);

  ReadOutcome backup = read_state_file(dir_fd_.get(), kBackup);
  if (backup.missing) {
    throw StateError(path() + ": " + main.problem + "; " + backup_path() +
                     " does not exist, so there is nothing to recover from: move state.json away to start empty");
  }
  if (!backup.state) {
    throw StateError(backup_path() + ": " + backup.problem + "; the backup is unusable too (state.json: " +
                     main.problem + "): move state.json and state.json.bak away to start empty");
  }
  // Keep the bad file for a post-mortem, out of the way of the next save.
  if (::renameat(dir_fd_.get(), kState, dir_fd_.get(), kCorrupt) == 0) {
    common::log(common::LogLevel::warn, path() + ": " + main.problem + "; kept as " + dir_ + "/" + kCorrupt +
                                            ", starting from " + backup_path());
  } else {
    common::log(common::LogLevel::warn, path() + ": " + main.problem + "; starting from " + backup_path());
  }
  loaded.state = std::move(*backup.state);
  loaded.from_backup = true;
  current_is_good_ = false;
  return loaded;
}

void StateStore::save(const State& state) {
  const std::string text = to_json(state).dump(2) + "\n";
  const int dir = dir_fd_.get();
  auto failed = [&](const std::string& step, int err) {
    ::unlinkat(dir, kTemp, 0);
    throw StateError("cannot save " + path() + ": " + step + ": " + errno_text(err));
  };

  UniqueFd fd(::openat(dir, kTemp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (!fd) throw StateError("cannot save " + path() + ": creating " + kTemp + ": " + errno_text(errno));
  if (!write_all(fd.get(), text)) failed(std::string("writing ") + kTemp, errno ? errno : EIO);
  if (::fsync(fd.get()) != 0) failed(std::string("fsync of ") + kTemp, errno);
  if (::close(fd.release()) != 0) failed(std::string("closing ") + kTemp, errno);

  if (current_is_good_) {
    // The .bak gets the current file's inode (no copy): link it under a temporary name, then
    // rename that over the .bak, so the .bak is always one whole document.
    ::unlinkat(dir, kBackupTemp, 0);
    if (::linkat(dir, kState, dir, kBackupTemp, 0) == 0) {
      if (::renameat(dir, kBackupTemp, dir, kBackup) != 0) {
        const int err = errno;
        ::unlinkat(dir, kBackupTemp, 0);
        failed(std::string("keeping the previous state as ") + kBackup, err);
      }
    } else if (errno != ENOENT) {
      failed(std::string("keeping the previous state as ") + kBackup, errno);
    }
  }
  if (::renameat(dir, kTemp, dir, kState) != 0) failed(std::string("renaming ") + kTemp, errno);
  current_is_good_ = true;
  // The rename is durable only once the directory is. If that fsync fails the new document is
  // in place all the same, and the caller's memory must follow what state.json now holds: so it
  // is logged, not thrown.
  if (::fsync(dir) != 0) {
    common::log(common::LogLevel::error, "fsync of " + dir_ + " after saving the state: " + errno_text(errno));
  }
}

}  // namespace portalfs::mountmgr
