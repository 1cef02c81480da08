// Clinic record files as the practice system writes them: one record per .json file, or one
// record per line in .ndjson. Yields each record's text with where it came from.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace connector {

struct record_text {
  std::string_view json;  // points into record_file::content
  std::size_t line = 1;   // first line of the record in the file
};

struct record_file {
  std::string path;
  std::string content;
  std::vector<record_text> records;
  std::string error;  // set when the file could not be read
};

// NDJSON when the name ends in .ndjson; otherwise the whole file is one record.
// Blank lines of NDJSON are skipped; a trailing '\r' is dropped.
record_file read_record_file(const std::string& path);

// The same split for text already in memory (an API request body); views point into `content`.
std::vector<record_text> split_records(std::string_view content, bool ndjson);

}  // namespace connector
