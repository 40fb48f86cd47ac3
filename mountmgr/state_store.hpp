// SPDX-License-Identifier: MIT
#pragma once

// Where the state lives: <state_dir>/state.json, with the previous good copy in state.json.bak
// and <state_dir>/state.lock flock'ed for as long as the store exists (one daemon per state dir).
//
// save() never leaves a half-written state.json: it writes state.json.tmp, fsyncs it, hard-links
// the current state.json to state.json.bak (through a temporary name and a rename, so the .bak
// too is always whole), renames the new file over state.json and fsyncs the directory. A crash at
// any point leaves the old or the new document, and a good .bak.
//
// load() reads the whole file or refuses it: a torn, corrupt, garbage or unreadable file is a
// StateError with one line naming the file, the problem and the way out. Nothing is guessed.

#include <string>

#include "common/unique_fd.hpp"
#include "mountmgr/manager.hpp"  // StateError
#include "mountmgr/state.hpp"

namespace portalfs::mountmgr {

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

  /// Reads state.json (or, with `recover_from_backup` and a bad state.json, state.json.bak; the
  /// bad file is then kept as state.json.corrupt). A missing state.json is fresh_state().
  /// Throws StateError.
  Loaded load(bool recover_from_backup);

  /// Writes `state` atomically (see above). Throws StateError (one line); state.json is then
  /// unchanged.
  void save(const State& state);

  [[nodiscard]] std::string path() const { return dir_ + "/state.json"; }
  [[nodiscard]] std::string backup_path() const { return dir_ + "/state.json.bak"; }

 private:
  std::string dir_;
  common::UniqueFd dir_fd_;
  common::UniqueFd lock_fd_;
  // Whether state.json holds a document known to be good (loaded or written by us): only then
  // does it become the .bak on the next save, so a corrupt file never replaces a good backup.
  bool current_is_good_ = false;
};

/// What load() would find in `state_dir`'s state.json, without locking or making anything
/// (portalctl doctor): missing, or "" when it is good, or why not ("is not valid JSON ...").
struct StateFileCheck {
  std::string path;
  bool missing = false;
  std::string problem;
};
StateFileCheck check_state_file(const std::string& state_dir);

}  // namespace portalfs::mountmgr
