// The inbox folder. The practice system writes each file under a temporary name (anything not
// ending in .json or .ndjson, or starting with a dot) and renames it when complete; rename is
// atomic, so a file with a final name is whole. Each such file is ingested in one transaction,
// then moved to processed/, or to rejected/ with NAME.errors.json beside it when any record was
// rejected (the accepted ones of that file are stored all the same).
//
// Crash safety: the file's SHA-256 is stored in the same transaction as its records. A file
// found again (after a crash between that commit and the move, or dropped in again) is taken
// again: its stored records come back as duplicates, records it now passes are stored, and its
// rejected records are not quarantined a second time.
//
// File names may be made of patient data: the log, the quarantine and stderr name a file only by
// its handle, "inbox:" and the first 12 hex digits of its SHA-256, which its errors file repeats.
// Files over 64 MiB are moved to rejected/ unread, with an errors file asking to split them.
//
// Several instances sharing one store (PostgreSQL) may scan one folder: each file is held by one
// instance at a time (a lock in the store, outbox::hold_intake_file) from reading it to moving it.
#pragma once

#include <set>
#include <string>

#include "connector/intake/intake.h"

namespace connector {

class inbox {
 public:
  // Creates DIR/processed and DIR/rejected when missing. Throws config_error when it cannot.
  inbox(std::string dir, intake& records);

  // Takes every complete file now in the folder, oldest first, into `store`. Returns how many it
  // took. Problems with one file (unreadable, cannot be moved, the store busy) are reported on
  // stderr without its content, and the file is tried again next time.
  int scan(outbox& store);

 private:
  bool take(outbox& store, const std::string& name);
  void refuse_too_large(const std::string& name);

  std::string dir_;
  intake& intake_;
  std::set<std::string> reported_;  // files whose trouble was already reported (not printed)
};

// True for names the inbox takes: NAME.json or NAME.ndjson, not hidden.
bool inbox_takes(const std::string& file_name);

}  // namespace connector
