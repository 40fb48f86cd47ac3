// SPDX-License-Identifier: MIT
#pragma once

// Where the state lives: <state_dir>/state.json (a whole document, written at a compaction)
// and <state_dir>/state.journal (what changed since, one JSON line per save), with the previous
// pair as state.json.bak and state.journal.bak, and <state_dir>/state.lock flock'ed for as long
// as the store exists (one daemon per state dir).
//
// Why a journal: a change touches one app or two, and writing the whole document each time
// cost time in proportion to every app installed (1 MB and ~100 ms at 1,000 apps, issue #14).
// save(next, saved) appends only the apps that differ between the two (whole app records, or
// null for a removed app) and, when anything else changed, everything but the apps:
//   {"seq": 7, "apps": {"notes": {...app record...}, "old": null}, "rest": {...}}
// written with one write() and fdatasync'ed before save() returns. save(state) writes the whole
// document (a compaction); save(next, saved) does so too once the journal has grown past the
// document (so the bytes written stay in proportion to the changes), or when the journal can't
// be trusted to follow `saved` (a save failed since the last compaction).
//
// A compaction never leaves a half-written state.json: it writes state.json.tmp (holding
// "journal_seq": the last record it includes) and fsyncs it, hard-links the current state.json to
// state.json.bak and renames state.journal to state.journal.bak (each pair stays whole: the .bak
// document and its journal still load), renames the new file over state.json and fsyncs the
// directory. A crash at any point leaves the old or the new document, with the records it does
// not hold still in state.journal or state.journal.bak.
//
// load() reads state.json, then the records after its journal_seq from state.journal.bak and
// state.journal, in order; a gap in the sequence, or any bad line but the last, is refused. The
// last line of state.journal may be torn (a crash or kill -9 mid-write, before the fdatasync the
// request waited for): it is dropped, and cut off the file, with a log line. Anything else torn,
// corrupt, garbage or unreadable is a StateError with one line naming the file, the problem and the
// way out. Nothing is guessed.

#include <set>
#include <string>

#include "common/unique_fd.hpp"
#include "mountmgr/manager.hpp"  // StateError
#include "mountmgr/state.hpp"

namespace portalfs::mountmgr {

struct StateRead;  // what load() read (state_store.cpp)

class StateStore {
 public:
  /// Creates `state_dir` when it is missing and takes the lock; throws StateError when another
  /// process (or another store in this one) holds it.
  explicit StateStore(std::string state_dir);
  StateStore(const StateStore&) = delete;
  StateStore& operator=(const StateStore&) = delete;

  struct Loaded {
    State state;
    bool fresh = false;        // there was no state.json
    bool from_backup = false;  // state.json was bad and state.json.bak was used
  };

  /// Reads state.json and the journal records after it (or, with `recover_from_backup` and a bad
  /// state.json, state.json.bak and the records after it; the bad file is then kept as
  /// state.json.corrupt). A missing state.json is fresh_state(). Throws StateError.
  Loaded load(bool recover_from_backup);

  /// Writes `state` as a whole document (a compaction, see above). Throws StateError (one line);
  /// what loads is then unchanged.
  void save(const State& state);

  /// Writes `next` as the change from `saved`, which must be what the last load() or save()
  /// left on disk: a journal record of what differs, or a compaction (see above). Throws
  /// StateError (one line); what loads is then unchanged. `apps_changed`, when given, names
  /// every app that may differ (the caller knows the others are equal): only those are compared.
  void save(const State& next, const State& saved, const std::set<std::string>* apps_changed = nullptr);

  /// Appended journal bytes after which save(next, saved) compacts, whatever the document's
  /// size (tests make it small).
  void set_compaction_floor(off_t bytes) { compaction_floor_ = bytes; }

  [[nodiscard]] std::string path() const { return dir_ + "/state.json"; }
  [[nodiscard]] std::string backup_path() const { return dir_ + "/state.json.bak"; }
  [[nodiscard]] std::string journal_path() const { return dir_ + "/state.journal"; }
  /// Whether state.journal holds records (a save(state) would fold them into state.json).
  [[nodiscard]] bool journaled() const { return journal_bytes_ > 0; }

 private:
  // Appends one record (a line) to state.journal and fdatasyncs it; false, errno set, when it
  // could not (the file is cut back to where it was, as far as possible).
  bool append_record(const std::string& line);
  void compact(const State& state);
  // load()'s steps: takes on what was read (and cuts a torn last line off the journal), or
  // starts without a journal that can't be read (--recover-from-backup).
  void adopt(const StateRead& read);
  Loaded recover_from_journal(const StateRead& failed);

  std::string dir_;
  common::UniqueFd dir_fd_;
  common::UniqueFd lock_fd_;
  // Whether state.json holds a document known to be good (loaded or written by us): only then
  // does it become the .bak on the next save, so a corrupt file never replaces a good backup.
  bool current_is_good_ = false;
  // The last journal record written or loaded (state.json's journal_seq after a compaction).
  uint64_t seq_ = 0;
  // Whether the journal follows the document: false after a failed save, until a compaction.
  bool journal_good_ = false;
  off_t journal_bytes_ = 0;   // the size of state.journal
  off_t document_bytes_ = 0;  // the size of state.json at its last compaction
  off_t compaction_floor_ = off_t{1} << 20;
};

/// The state `state_dir` holds now (state.json and its journal), read without locking or
/// changing anything: for portalctl doctor and tests, which look while a daemon runs. Throws
/// StateError; a missing state.json is fresh_state().
State read_state_dir(const std::string& state_dir);

/// What load() would find in `state_dir`'s state.json, without locking or making anything
/// (portalctl doctor): missing, or "" when it is good, or why not ("is not valid JSON ...").
struct StateFileCheck {
  std::string path;
  bool missing = false;
  std::string problem;
};
StateFileCheck check_state_file(const std::string& state_dir);

}  // namespace portalfs::mountmgr
