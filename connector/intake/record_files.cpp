// Splitting record files into records.
#include "connector/intake/record_files.h"

#include <fstream>
#include <sstream>

namespace connector {

record_file read_record_file(const std::string& path) {
  record_file file;
  file.path = path;
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    file.error = "cannot be read";
    return file;
  }
  std::ostringstream text;
  text << in.rdbuf();
  file.content = std::move(text).str();

  const bool ndjson = path.size() >= 7 && path.compare(path.size() - 7, 7, ".ndjson") == 0;
  file.records = split_records(file.content, ndjson);
  return file;
}

std::vector<record_text> split_records(std::string_view all, bool ndjson) {
  std::vector<record_text> records;
  if (!ndjson) {
    records.push_back({all, 1});
    return records;
  }
  std::size_t line = 1;
  std::size_t start = 0;
  while (start < all.size()) {
    std::size_t end = all.find('\n', start);
    if (end == std::string_view::npos) end = all.size();
    std::string_view one = all.substr(start, end - start);
    if (!one.empty() && one.back() == '\r') one.remove_suffix(1);
    if (one.find_first_not_of(" \t") != std::string_view::npos) records.push_back({one, line});
    start = end + 1;
    ++line;
  }
  return records;
}

}  // namespace connector
