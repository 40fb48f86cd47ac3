// SPDX-License-Identifier: MIT
#pragma once

// The audit trail: one JSON line per denial or change, per app, in <dir>/<app>.jsonl
// (share-level changes in _platform.jsonl), rotated by size to <app>.jsonl.1 ... .N.
//
// Whoever records (a FUSE worker, the mount manager) only appends a small Record to an
// in-memory queue and goes on: one writer thread formats and writes the lines. A FUSE worker
// must never wait for a disk (a full or slow state disk would stall every app's I/O), so the
// queue is bounded and a record that does not fit is counted, not waited for: the writer then
// puts one line saying how many of that app's records were dropped. Everything queued is
// written before the log is destroyed.

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace portalfs::common {

/// What happened. Empty strings are left out of the line.
struct AuditRecord {
  std::chrono::system_clock::time_point time = std::chrono::system_clock::now();
  std::string app;     // "" for share-level records: written to _platform.jsonl
  std::string view;    // "data/<dir>" or "shared/<share>" ("" for app-level records)
  std::string op;      // "create", "write-close", "rename", "grant", "app.install", ...
  std::string path;    // relative to the view's root, starting with "/"
  std::string to;      // rename: the new path
  std::string result;  // "ok", or the errno's name ("EROFS") of a denial
  std::string detail;  // what a grant or app change was ("read-write"), a chmod's mode...
};

/// The name of a (positive) errno value: "EACCES", "EPERM"...; "E<n>" for an unknown one.
std::string errno_name(int err);

/// The record as its line in the file: one JSON object (keys sorted) and "\n".
std::string audit_line(const AuditRecord& r);

/// A parsed line back as a record; throws nlohmann::json::exception (or std::invalid_argument
/// for its time) on a line that is not one.
AuditRecord audit_record_from_json(const nlohmann::json& j);

/// "2026-12-06T22:40:01.123Z" (UTC, milliseconds), and back (nullopt-free: throws
/// std::invalid_argument naming the text).
std::string format_time(std::chrono::system_clock::time_point t);
std::chrono::system_clock::time_point parse_time(const std::string& text);

/// `portalctl audit --since`: an ISO time as format_time() writes it (UTC; the fraction and
/// the Z may be left out), or a span before `now`: "30s", "10m", "2h", "7d". nullopt when it
/// is neither.
std::optional<std::chrono::system_clock::time_point> parse_since(
    const std::string& text, std::chrono::system_clock::time_point now);

/// The file an app's records go to below the audit directory ("_platform.jsonl" for "").
std::string audit_file_name(const std::string& app);

class AuditLog {
 public:
  struct Options {
    size_t max_bytes = 8 << 20;  // a file is rotated before a line would make it larger
    unsigned keep = 4;           // rotated files kept: <app>.jsonl.1 (newest) ... .keep
    size_t queue = 65536;        // records waiting at most; more are dropped and counted
  };

  /// Writes below `dir` (made if missing, 0700: paths of every app are in there).
  explicit AuditLog(std::string dir, Options options);
  explicit AuditLog(std::string dir) : AuditLog(std::move(dir), Options{}) {}
  /// Writes what is queued, then stops the writer.
  ~AuditLog();
  AuditLog(const AuditLog&) = delete;
  AuditLog& operator=(const AuditLog&) = delete;

  /// Queues a record; never blocks on I/O (only on the queue's lock for a moment).
  void post(AuditRecord record) noexcept;
  /// Waits until every record posted so far is written (tests, `portalctl audit` after a change).
  void flush();

  [[nodiscard]] const std::string& dir() const { return dir_; }

 private:
  struct File {  // by file name (audit_file_name)
    int fd = -1;
    size_t size = 0;       // on disk
    std::string pending;   // lines of this batch not written yet
  };
  void run();
  /// Formats a batch into the files' pending lines (rotating where a file would grow past
  /// max_bytes), then writes each file's lines with one write().
  void write_batch(std::vector<AuditRecord>& batch, std::map<std::string, uint64_t>& dropped);
  void add_line(const std::string& app, const std::string& line);
  void write_pending(File& file);
  File& open_file(const std::string& name);
  void rotate(const std::string& name, File& file);

  const std::string dir_;
  const Options options_;

  std::mutex mutex_;
  std::condition_variable wake_, idle_;
  std::vector<AuditRecord> queue_;
  std::map<std::string, uint64_t> dropped_;  // by app, since the writer last took the queue
  uint64_t posted_ = 0, written_ = 0;        // for flush()
  unsigned flushing_ = 0;                    // flush() calls waiting
  bool stopping_ = false;
  // The writer takes the queue every kPeriod, or as soon as kWakeAt records wait: records
  // reach the disk within a fraction of a second, in few writes.
  static constexpr std::chrono::milliseconds kPeriod{100};
  static constexpr size_t kWakeAt = 1024;

  std::map<std::string, File> files_;  // the writer thread's alone
  std::thread thread_;
};

}  // namespace portalfs::common
