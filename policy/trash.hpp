// SPDX-License-Identifier: MIT
#pragma once

// A share's trash (opt-in, `portalctl share create|set NAME --trash 30d`): what is deleted
// through a view of the share is moved, by one rename, to
//
//   <storage-root>/share-trash/<share>/<id>/entry         the file, symlink or directory itself
//   <storage-root>/share-trash/<share>/<id>/record.json   where it was, who deleted it, when
//
// The trash lies beside the share, not in it: no view is rooted above a share's directory, so
// no view can name, list, open or rename into the trash, and nothing in the views has to hide
// it. It is on the share's file system (the same storage root), so a delete stays a rename:
// O(1) whatever the size, with bytes, owner, mode, times and provenance kept on the inode,
// and a restore is the rename back.
//
// This file holds the format both sides share: the FUSE layer writes entries, the mount
// manager lists, restores and purges them. No I/O here.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace portalfs::policy {

inline constexpr const char* kShareTrashDir = "share-trash";  // below the storage root
inline constexpr const char* kTrashEntry = "entry";
inline constexpr const char* kTrashRecord = "record.json";

/// How long trashed entries are kept: "30d", "12h", "45m", "90s" (a positive whole number and
/// one unit, at most 3650 days) -> seconds; "off" -> 0. nullopt for anything else, and
/// `expected` (if given) says what was expected, for the one-line error.
std::optional<int64_t> parse_retention(std::string_view text, std::string* expected = nullptr);
/// The shortest exact form: 2592000 -> "30d", 43200 -> "12h", 0 -> "off".
std::string format_retention(int64_t seconds);

/// What one trashed entry was.
struct TrashRecord {
  std::string path;     // relative to the share's directory, as it was: "docs/a.txt"
  std::string app;      // the app that deleted it
  std::string view;     // the view it was deleted through (its name in apps/<app>/shared/)
  int64_t deleted_at = 0;  // Unix seconds
  std::string kind;     // "file", "directory", "symlink" or "other"
  friend bool operator==(const TrashRecord&, const TrashRecord&) = default;
};

std::string trash_record_json(const TrashRecord& record);
/// Strict: nullopt (and `problem`, one line) for anything but what trash_record_json writes.
std::optional<TrashRecord> parse_trash_record(std::string_view text, std::string* problem = nullptr);

/// An entry's id: its UTC deletion time and 8 random hex digits, "20261206-223800-1a2b3c4d"
/// (sorts by time; unique across shares in practice, so `trash restore ID` needs no share).
std::string make_trash_id(int64_t unix_seconds, uint32_t random);
/// Whether `id` has that form (ids come from the command line and from the disk).
bool valid_trash_id(std::string_view id);

}  // namespace portalfs::policy
