// SPDX-License-Identifier: MIT
#include "mountmgr/state_store.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <initializer_list>
#include <optional>
#include <vector>

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
constexpr const char* kJournal = "state.journal";
constexpr const char* kJournalBackup = "state.journal.bak";
constexpr const char* kLock = "state.lock";
// A state document is a few KiB per app; anything near this is not ours. A journal is compacted
// once it outgrows the document, so the same bound serves for it.
constexpr off_t kMaxStateBytes = off_t{256} << 20;
constexpr auto kRecoveryHint =
    "; start with --recover-from-backup to use state.json.bak, or move the file away to start empty";

std::string errno_text(int err) { return std::strerror(err); }

// The outcome of reading one file whole: missing, its text, or why it can't be read.
struct ReadText {
  bool missing = false;
  std::string text;
  std::string problem;
};

ReadText read_whole(int dir_fd, const char* name) {
  ReadText out;
  // O_NOFOLLOW: save() replaces these files by rename, so a symlink there would be silently
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
  char buf[65536];
  while (true) {
    const ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      out.problem = "cannot read: " + errno_text(errno);
      return out;
    }
    if (n == 0) break;
    out.text.append(buf, static_cast<std::size_t>(n));
    if (static_cast<off_t>(out.text.size()) > kMaxStateBytes) {
      out.problem = "is too large to be a state file";
      return out;
    }
  }
  return out;
}

// nlohmann's message without its "[json.exception.parse_error.101] " prefix.
std::string json_reason(const nlohmann::json::exception& e) {
  std::string_view reason = e.what();
  if (auto end = reason.find("] "); reason.starts_with("[json.exception.") && end != std::string_view::npos) {
    reason.remove_prefix(end + 2);
  }
  return std::string(reason);
}

// One journal file: its records in file order, and how far it is good.
struct JournalFile {
  std::vector<nlohmann::json> records;
  std::string problem;  // a bad line before the last ("" = none)
  off_t good_bytes = 0;  // the length of the whole lines read
  bool torn_tail = false;  // the last line was incomplete or not a record: dropped
};

// Whether `line` is a journal record: {"seq": N > 0, "apps": {name: object|null}, "rest"?: {}}.
// Only the shape: what the records say is checked by state_from_json once they are applied.
std::optional<nlohmann::json> parse_record(std::string_view line, std::string* problem) {
  nlohmann::json record;
  try {
    record = nlohmann::json::parse(line);
  } catch (const nlohmann::json::exception& e) {
    *problem = "is not valid JSON (torn or corrupt): " + json_reason(e);
    return std::nullopt;
  }
  const auto seq = record.find("seq");
  const auto apps = record.find("apps");
  const auto rest = record.find("rest");
  if (!record.is_object() || seq == record.end() || !seq->is_number_unsigned() || seq->get<uint64_t>() == 0 ||
      apps == record.end() || !apps->is_object() || (rest != record.end() && !rest->is_object()) ||
      record.size() != 2u + (rest != record.end() ? 1u : 0u)) {
    *problem = "is not a journal record: expected {\"seq\": N, \"apps\": {...}, \"rest\"?: {...}}, got " +
               describe_json(record);
    return std::nullopt;
  }
  for (const auto& item : apps->items()) {
    if (!item.value().is_object() && !item.value().is_null()) {
      *problem = "app " + describe_json(item.key()) + ": expected an app record or null, got " +
                 describe_json(item.value());
      return std::nullopt;
    }
  }
  return record;
}

// Reads a journal; `torn_tail_allowed`: its last line may be torn (the live journal, which a
// crash may have cut in the middle of a write) and is then dropped.
JournalFile read_journal(const std::string& text, bool torn_tail_allowed) {
  JournalFile out;
  std::size_t pos = 0;
  int line_no = 0;
  while (pos < text.size()) {
    ++line_no;
    const std::size_t nl = text.find('\n', pos);
    const bool last = nl == std::string::npos || nl + 1 == text.size();
    std::string problem;
    std::optional<nlohmann::json> record;
    if (nl != std::string::npos) record = parse_record(std::string_view(text).substr(pos, nl - pos), &problem);
    if (!record) {
      // A line without its newline was cut mid-write: its fdatasync never returned, so its
      // request was never answered ok. Whatever it holds is dropped.
      if (last && torn_tail_allowed) {
        out.torn_tail = true;
        return out;
      }
      out.problem = "line " + std::to_string(line_no) + " " + (problem.empty() ? "is incomplete (torn)" : problem);
      return out;
    }
    out.records.push_back(std::move(*record));
    pos = nl + 1;
    out.good_bytes = static_cast<off_t>(pos);
  }
  return out;
}

// Applies one journal record to a whole state document (both as JSON).
void apply_record(nlohmann::json& doc, const nlohmann::json& record) {
  nlohmann::json& apps = doc["apps"];
  for (const auto& item : record.at("apps").items()) {
    if (item.value().is_null()) {
      apps.erase(item.key());
    } else {
      apps[item.key()] = item.value();
    }
  }
  if (const auto rest = record.find("rest"); rest != record.end()) {
    nlohmann::json next = *rest;
    next["apps"] = std::move(apps);
    if (const auto seq = doc.find("journal_seq"); seq != doc.end()) next["journal_seq"] = *seq;
    doc = std::move(next);
  }
}

}  // namespace

// A document and the journals after it, assembled into a state.
struct StateRead {
  bool missing = false;  // no document and no journal record
  std::optional<State> state;
  std::string problem;  // "<file>: <problem>" (names the file: the document or a journal)
  std::string document_problem;  // the document's own problem, when it is the one at fault
  uint64_t seq = 0;              // the last record applied (or the document's journal_seq)
  bool journaled = false;        // the document names its journal_seq: the journals follow it
  off_t document_bytes = 0;
  off_t journal_good_bytes = 0;  // of the live journal (the last of `journals`)
  bool torn_tail = false;        // the live journal's last line was dropped
};

namespace {

// Reads `document` (missing: a fresh state) and applies the records of `journals` (in order;
// the last is the live one) that follow its journal_seq.
StateRead assemble(int dir_fd, const std::string& dir, const char* document, std::initializer_list<const char*> journals) {
  StateRead out;
  auto fail = [&](const std::string& file, const std::string& problem) {
    out.problem = dir + "/" + file + ": " + problem;
    return out;
  };
  ReadText doc_text = read_whole(dir_fd, document);
  nlohmann::json doc;
  if (!doc_text.problem.empty()) {
    out.document_problem = doc_text.problem;
    return fail(document, doc_text.problem);
  }
  if (doc_text.missing) {
    doc = to_json(fresh_state());
  } else {
    if (doc_text.text.empty()) {
      out.document_problem = "is empty (a torn write?)";
      return fail(document, out.document_problem);
    }
    try {
      doc = nlohmann::json::parse(doc_text.text);
    } catch (const nlohmann::json::exception& e) {
      out.document_problem = "is not valid JSON (torn or corrupt): " + json_reason(e);
      return fail(document, out.document_problem);
    }
    out.document_bytes = static_cast<off_t>(doc_text.text.size());
    if (const auto seq = doc.is_object() ? doc.find("journal_seq") : doc.end(); seq != doc.end()) {
      if (!seq->is_number_unsigned()) {
        out.document_problem = "/journal_seq: expected a journal record number, got " + describe_json(*seq);
        return fail(document, out.document_problem);
      }
      out.seq = seq->get<uint64_t>();
      out.journaled = true;
    }
  }
  // A document without journal_seq was written by an older portalfs, or by hand: the journals
  // (if any are left) are not its own, and are not applied. The next save starts a journal.
  const std::initializer_list<const char*> followed = out.journaled ? journals : std::initializer_list<const char*>{};
  const uint64_t document_seq = out.seq;
  std::size_t index = 0;
  for (const char* name : followed) {
    const bool live = ++index == followed.size();
    ReadText text = read_whole(dir_fd, name);
    if (text.missing) continue;
    if (!text.problem.empty()) return fail(name, text.problem + kRecoveryHint);
    JournalFile journal = read_journal(text.text, live);
    if (!journal.problem.empty()) return fail(name, journal.problem + kRecoveryHint);
    if (live) {
      out.journal_good_bytes = journal.good_bytes;
      out.torn_tail = journal.torn_tail;
    }
    for (const auto& record : journal.records) {
      const auto seq = record.at("seq").get<uint64_t>();
      if (seq <= out.seq) continue;  // already in the document (or in the journal before)
      if (seq != out.seq + 1) {
        return fail(name, "record " + std::to_string(seq) + " follows record " + std::to_string(out.seq) +
                              ": the records between are missing" + kRecoveryHint);
      }
      apply_record(doc, record);
      out.seq = seq;
    }
  }
  if (doc_text.missing) {
    out.missing = true;
    return out;
  }
  try {
    out.state = state_from_json(doc);
  } catch (const FieldError& e) {
    // A key in the pointer may hold a newline: escaped, the message stays one line.
    std::string problem = e.pointer().empty() ? e.problem() : common::escape_for_message(e.pointer()) + ": " + e.problem();
    if (out.seq != document_seq) {
      return fail(std::string(document) + " with its journal (to record " + std::to_string(out.seq) + ")", problem);
    }
    out.document_problem = problem;
    return fail(document, problem);
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
  const StateRead read = assemble(dir.get(), state_dir, kState, {kJournalBackup, kJournal});
  out.missing = read.missing;
  // The document's own problem as it always read; a journal's names the journal.
  out.problem = !read.document_problem.empty() ? read.document_problem
                : read.problem.empty()          ? ""
                                                : read.problem.substr(state_dir.size() + 1);
  return out;
}

State read_state_dir(const std::string& state_dir) {
  UniqueFd dir(::open(state_dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dir) {
    if (errno == ENOENT) return fresh_state();
    throw StateError(state_dir + ": cannot open the state directory: " + errno_text(errno));
  }
  StateRead read = assemble(dir.get(), state_dir, kState, {kJournalBackup, kJournal});
  if (!read.problem.empty()) throw StateError(read.problem);
  return read.missing ? fresh_state() : std::move(*read.state);
}

StateStore::Loaded StateStore::load(bool recover_from_backup) {
  Loaded loaded;
  StateRead main = assemble(dir_fd_.get(), dir_, kState, {kJournalBackup, kJournal});
  if (main.problem.empty()) {
    if (recover_from_backup && !main.missing) {
      common::log(common::LogLevel::info, path() + " is good; --recover-from-backup is not needed and was ignored");
    }
    loaded.fresh = main.missing;
    loaded.state = main.missing ? fresh_state() : std::move(*main.state);
    current_is_good_ = !main.missing && main.document_bytes > 0;
    adopt(main);
    return loaded;
  }
  if (main.document_problem.empty()) {
    // A journal is at fault, not the document.
    if (!recover_from_backup) throw StateError(main.problem);
    return recover_from_journal(main);
  }
  if (!recover_from_backup) throw StateError(path() + ": " + main.document_problem + kRecoveryHint);

  StateRead backup = assemble(dir_fd_.get(), dir_, kBackup, {kJournalBackup, kJournal});
  ReadText bak = read_whole(dir_fd_.get(), kBackup);
  if (bak.missing) {
    throw StateError(path() + ": " + main.document_problem + "; " + backup_path() +
                     " does not exist, so there is nothing to recover from: move state.json away to start empty");
  }
  if (!backup.problem.empty()) {
    throw StateError(backup.problem + "; the backup is unusable too (state.json: " + main.document_problem +
                     "): move state.json and state.json.bak away to start empty");
  }
  // Keep the bad file for a post-mortem, out of the way of the next save.
  if (::renameat(dir_fd_.get(), kState, dir_fd_.get(), kCorrupt) == 0) {
    common::log(common::LogLevel::warn, path() + ": " + main.document_problem + "; kept as " + dir_ + "/" + kCorrupt +
                                            ", starting from " + backup_path() + " and the journal after it");
  } else {
    common::log(common::LogLevel::warn, path() + ": " + main.document_problem + "; starting from " + backup_path());
  }
  loaded.state = std::move(*backup.state);
  loaded.from_backup = true;
  current_is_good_ = false;
  adopt(backup);
  return loaded;
}

StateStore::Loaded StateStore::recover_from_journal(const StateRead& failed) {
  // The bad journal is set aside; the document and the journal before it still load, without
  // the changes since the last compaction: said loudly.
  const std::string corrupt = std::string(kJournal) + ".corrupt";
  if (::renameat(dir_fd_.get(), kJournal, dir_fd_.get(), corrupt.c_str()) != 0) {
    throw StateError(failed.problem + "; cannot set it aside: " + errno_text(errno));
  }
  StateRead rest = assemble(dir_fd_.get(), dir_, kState, {kJournalBackup});
  if (!rest.problem.empty()) throw StateError(rest.problem + " (after setting aside " + corrupt + ")");
  common::log(common::LogLevel::warn, failed.problem + ": kept as " + dir_ + "/" + corrupt + ", starting from " +
                                          path() + " without the changes it recorded");
  Loaded loaded;
  loaded.state = rest.missing ? fresh_state() : std::move(*rest.state);
  loaded.from_backup = true;
  current_is_good_ = false;
  adopt(rest);
  journal_bytes_ = 0;
  return loaded;
}

void StateStore::adopt(const StateRead& read) {
  seq_ = read.seq;
  document_bytes_ = read.document_bytes;
  journal_bytes_ = read.journal_good_bytes;
  // Only a document that names its journal_seq is followed by the journal; any other (fresh,
  // older, hand-written) is written whole by the next save, which starts the journal.
  journal_good_ = read.journaled;
  if (!read.torn_tail) return;
  // The next record must start on a line of its own: cut the torn one off now.
  UniqueFd fd(::openat(dir_fd_.get(), kJournal, O_WRONLY | O_NOFOLLOW | O_CLOEXEC));
  if (fd && ::ftruncate(fd.get(), journal_bytes_) == 0 && ::fsync(fd.get()) == 0) {
    common::log(common::LogLevel::warn, journal_path() + ": its last line was torn (a crash while it was written), " +
                                            "and is dropped: that change was never confirmed");
    return;
  }
  journal_good_ = false;  // the next save compacts, which starts a new journal
  common::log(common::LogLevel::warn, journal_path() + ": its last line was torn and could not be cut off (" +
                                          errno_text(errno) + "): the next save rewrites the state whole");
}

void StateStore::save(const State& state) { compact(state); }

namespace {

// The journal record that turns `saved` into `next`: the apps that differ (null: removed), and
// everything else when it changed. Both maps are walked once, side by side.
nlohmann::json change_record(uint64_t seq, const State& next, const State& saved,
                             const std::set<std::string>* apps_changed) {
  nlohmann::json apps = nlohmann::json::object();
  if (apps_changed) {
    for (const auto& name : *apps_changed) {
      const auto a = saved.apps.find(name);
      const auto b = next.apps.find(name);
      if (b == next.apps.end()) {
        if (a != saved.apps.end()) apps[name] = nullptr;
      } else if (a == saved.apps.end() || !(a->second == b->second)) {
        apps[name] = app_to_json(b->second);
      }
    }
  }
  auto a = apps_changed ? saved.apps.end() : saved.apps.begin();
  auto b = apps_changed ? next.apps.end() : next.apps.begin();
  while (a != saved.apps.end() || b != next.apps.end()) {
    if (b == next.apps.end() || (a != saved.apps.end() && a->first < b->first)) {
      apps[a->first] = nullptr;
      ++a;
    } else if (a == saved.apps.end() || b->first < a->first) {
      apps[b->first] = app_to_json(b->second);
      ++b;
    } else {
      if (!(a->second == b->second)) apps[b->first] = app_to_json(b->second);
      ++a;
      ++b;
    }
  }
  nlohmann::json record = {{"seq", seq}, {"apps", std::move(apps)}};
  if (!same_except_apps(next, saved)) {
    nlohmann::json rest = to_json_without_apps(next);
    record["rest"] = std::move(rest);
  }
  return record;
}

// The highest record number in either journal, read leniently (bad lines are skipped): only
// to start a document past them all.
uint64_t highest_seq_on_disk(int dir_fd) {
  uint64_t highest = 0;
  for (const char* name : {kJournalBackup, kJournal}) {
    const ReadText text = read_whole(dir_fd, name);
    std::size_t pos = 0;
    while (pos < text.text.size()) {
      std::size_t nl = text.text.find('\n', pos);
      if (nl == std::string::npos) nl = text.text.size();
      const auto record = nlohmann::json::parse(text.text.substr(pos, nl - pos), nullptr, /*allow_exceptions=*/false);
      if (record.is_object() && record.contains("seq") && record["seq"].is_number_unsigned()) {
        highest = std::max(highest, record["seq"].get<uint64_t>());
      }
      pos = nl + 1;
    }
  }
  return highest;
}

}  // namespace

void StateStore::save(const State& next, const State& saved, const std::set<std::string>* apps_changed) {
  if (!journal_good_) {
    compact(next);
    return;
  }
  const nlohmann::json record = change_record(seq_ + 1, next, saved, apps_changed);
  if (record.at("apps").empty() && !record.contains("rest")) return;  // nothing changed
  const std::string line = record.dump() + "\n";
  if (!append_record(line)) {
    const int err = errno;
    journal_good_ = false;  // the journal may end in a torn line: the next save compacts
    throw StateError("cannot save " + path() + ": appending to " + kJournal + ": " + errno_text(err));
  }
  ++seq_;
  journal_bytes_ += static_cast<off_t>(line.size());
  // Once the journal is as long as the document, writing the document costs no more than what
  // the journal already cost: the bytes written stay in proportion to what changed. The record
  // went to the journal first, so the journal that becomes state.journal.bak holds every
  // change up to the new document, and the .bak pair loads as the whole state.
  if (journal_bytes_ > std::max(compaction_floor_, document_bytes_)) {
    try {
      compact(next);
    } catch (const StateError& e) {
      // The change is saved (in the journal); only the folding in failed, and is tried again.
      common::log(common::LogLevel::warn, std::string("state journal not compacted: ") + e.what());
    }
  }
}

bool StateStore::append_record(const std::string& line) {
  // Opened for each record, through the directory: a state directory that was removed or
  // replaced fails the save here, instead of writing into a file nobody will read.
  UniqueFd fd(::openat(dir_fd_.get(), kJournal, O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (!fd) return false;
  const bool created = journal_bytes_ == 0;
  if (!write_all(fd.get(), line) || ::fdatasync(fd.get()) != 0) {
    const int err = errno ? errno : EIO;
    if (::ftruncate(fd.get(), journal_bytes_) != 0) {
      common::log(common::LogLevel::warn, journal_path() + ": cannot cut back a failed record: " + errno_text(errno));
    }
    errno = err;
    return false;
  }
  // A journal just made is durable only once its directory entry is.
  if (created && ::fsync(dir_fd_.get()) != 0) return false;
  return true;
}

void StateStore::compact(const State& state) {
  const int dir = dir_fd_.get();
  // A journal that does not follow the document (it was older or hand-written, or a save
  // failed) must never be applied to the new one: the new document's journal_seq is past every
  // record on disk (and the one a failed save may have left), so a reader skips them all.
  const bool follows = journal_good_;
  if (!follows) seq_ = std::max(seq_, highest_seq_on_disk(dir)) + 1;
  nlohmann::json doc = to_json(state);
  // The records up to seq_ are in this document; a reader skips them in the journals, and
  // applies the ones after.
  doc["journal_seq"] = seq_;
  const std::string text = doc.dump(2) + "\n";
  auto failed = [&](const std::string& step, int err) {
    ::unlinkat(dir, kTemp, 0);
    journal_good_ = false;
    throw StateError("cannot save " + path() + ": " + step + ": " + errno_text(err));
  };

  UniqueFd fd(::openat(dir, kTemp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (!fd) {
    journal_good_ = false;
    throw StateError("cannot save " + path() + ": creating " + kTemp + ": " + errno_text(errno));
  }
  if (!write_all(fd.get(), text)) failed(std::string("writing ") + kTemp, errno ? errno : EIO);
  if (::fsync(fd.get()) != 0) failed(std::string("fsync of ") + kTemp, errno);
  if (::close(fd.release()) != 0) failed(std::string("closing ") + kTemp, errno);

  if (current_is_good_) {
    // The .bak gets the current file's inode (no copy): link it under a temporary name, then
    // rename that over the .bak, so the .bak is always one whole document. Its journal goes
    // with it: state.json.bak and state.journal.bak load as one, and so, until the rename
    // below, do state.json and state.journal.bak.
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
    if (follows && ::renameat(dir, kJournal, dir, kJournalBackup) != 0 && errno != ENOENT) {
      failed(std::string("keeping the journal as ") + kJournalBackup, errno);
    }
  }
  if (::renameat(dir, kTemp, dir, kState) != 0) failed(std::string("renaming ") + kTemp, errno);
  current_is_good_ = true;
  journal_good_ = true;
  journal_bytes_ = 0;
  document_bytes_ = static_cast<off_t>(text.size());
  // What is left of a journal that did not follow holds no record past seq_: the next record
  // starts a new one.
  if (::unlinkat(dir, kJournal, 0) != 0 && errno != ENOENT) {
    common::log(common::LogLevel::warn, journal_path() + ": cannot remove after a compaction: " + errno_text(errno));
    journal_good_ = false;
  }
  // The rename is durable only once the directory is. If that fsync fails the new document is
  // in place all the same, and the caller's memory must follow what state.json now holds: so it
  // is logged, not thrown.
  if (::fsync(dir) != 0) {
    common::log(common::LogLevel::error, "fsync of " + dir_ + " after saving the state: " + errno_text(errno));
  }
}

}  // namespace portalfs::mountmgr
