// The sync log: one JSON line per event, for IT staff and their log shippers. Appended by every
// process that changes the outbox (the daemon, `ingest`, `replay`); rotated by size, keeping
// `keep_files` older files as PATH.1 (newest) ... PATH.N. Lines carry no patient data: see
// sync_event.h.
#pragma once

#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "connector/config/config.h"
#include "connector/observe/sync_event.h"

namespace connector {

class sync_log : public event_sink {
 public:
  // Opens (creates, mode 0640) the log. A log that cannot be opened (read-only, a missing folder,
  // a full disk) never stops the connector: a warning goes to stderr, lines are counted as lost,
  // and every later line tries the file again, so the log resumes by itself.
  explicit sync_log(log_config settings);
  ~sync_log() override;
  sync_log(const sync_log&) = delete;
  sync_log& operator=(const sync_log&) = delete;

  // Appends one line. Thread-safe; a failed write is counted, never thrown: the outbox, not the
  // log, is the record of truth, and delivery must not stop because a disk filled with logs.
  void emit(const sync_event& e) override;
  std::int64_t failed_writes() const;
  // The last write failed (for the sync_log_unwritable alert and /metrics).
  bool failing() const;

  const log_config& settings() const { return settings_; }

 private:
  void reopen_if_rotated();
  void rotate();
  void note_write(bool ok);

  log_config settings_;
  mutable std::mutex mutex_;
  int fd_ = -1;
  std::int64_t failed_writes_ = 0;
  bool failing_ = false;
  std::int64_t lost_since_failing_ = 0;
};

// The event as one JSON object (no newline); empty and zero fields are left out.
std::string event_json(const sync_event& e);

// UTC timestamps as the log writes them: 2026-11-24T10:05:00.123Z.
std::string utc_text(std::int64_t ms);
// Reads 2026-11-24T10:05:00[.123]Z, 2026-11-24T10:05Z, 2026-11-24 (midnight UTC), or an age
// before `now_ms`: 90s, 15m, 2h, 3d.
std::optional<std::int64_t> parse_time_or_age(std::string_view text, std::int64_t now_ms);

// The log's files, oldest first: PATH.N ... PATH.1, PATH (those that exist).
std::vector<std::string> log_files_oldest_first(const log_config& settings);

// The newest `limit` event lines, newest first; only those of `record_id` when it is given.
std::vector<std::string> recent_event_lines(const log_config& settings, std::size_t limit,
                                            std::string_view record_id = {});

}  // namespace connector
