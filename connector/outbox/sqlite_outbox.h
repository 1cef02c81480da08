// The outbox in a SQLite file: WAL journal, synchronous=FULL by default (a committed batch survives
// power loss), prepared statements reused for every record.
#pragma once

#include <memory>
#include <string>

#include "connector/outbox/outbox.h"
#include "connector/outbox/sqlite.h"

namespace connector {

class sqlite_outbox final : public outbox {
 public:
  // Opens or creates the store. `full_sync` false trades the last commits on power loss for speed.
  explicit sqlite_outbox(const std::string& path, bool full_sync = true);

  std::vector<enqueue_result> enqueue(const std::vector<inbound_record>& records,
                                      const std::vector<quarantined_record>& quarantined,
                                      std::int64_t now_ms) override;
  outbox_status status(std::int64_t now_ms) override;

 private:
  sqlite::database db_;
  sqlite::statement latest_revision_;
  sqlite::statement supersede_older_;
  sqlite::statement insert_record_;
  sqlite::statement insert_quarantined_;
};

}  // namespace connector
