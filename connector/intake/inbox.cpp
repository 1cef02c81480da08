// Scanning the inbox and moving files on.
#include "connector/intake/inbox.h"

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "connector/config/config.h"
#include "connector/digest.h"
#include "connector/failpoint.h"
#include "connector/observe/sync_log.h"
#include "fhir/json_writer.h"

namespace connector {
namespace {

namespace fs = std::filesystem;

// DIR/NAME, or DIR/STEM.2.EXT ... when a file of that name was taken before.
fs::path free_name(const fs::path& dir, const std::string& name) {
  fs::path target = dir / name;
  const fs::path stem = fs::path(name).stem();
  const std::string ext = fs::path(name).extension().string();
  for (int n = 2; fs::exists(target); ++n) target = dir / (stem.string() + "." + std::to_string(n) + ext);
  return target;
}

constexpr std::uintmax_t max_file_bytes = 64 * 1024 * 1024;

// The rejected records of a file, one per line for people, as JSON for tools. `handle` is how the
// sync log names the file.
std::string errors_json(const std::string& handle, const std::vector<intake_result>& results) {
  std::size_t accepted = 0;
  for (const auto& r : results) accepted += r.accepted ? 1 : 0;
  std::string text = "{\"file\":\"" + handle + "\",\"accepted\":" + std::to_string(accepted) +
                     ",\"rejected\":[\n";
  bool first = true;
  for (const auto& r : results) {
    if (r.accepted) continue;
    fhir::json_writer one;
    one.begin_object();
    one.member("line", static_cast<std::int64_t>(r.line));
    one.member("record_id", r.record_id);
    one.key("problems");
    one.begin_array();
    for (const auto& p : r.problems) {
      one.begin_object();
      one.member("field", p.path);
      one.member("message", p.message);
      one.end_object();
    }
    one.end_array();
    one.end_object();
    text += (first ? "  " : ",\n  ") + std::string(one.view());
    first = false;
  }
  return text + "\n]}\n";
}

void write_file_atomically(const fs::path& path, const std::string& content) {
  const fs::path temporary = path.string() + ".tmp";
  {
    std::ofstream out(temporary, std::ios::binary | std::ios::trunc);
    out << content;
    if (!out.flush()) throw std::runtime_error("cannot write " + temporary.string());
  }
  fs::rename(temporary, path);
}

}  // namespace

bool inbox_takes(const std::string& name) {
  if (name.empty() || name[0] == '.') return false;
  auto ends_with = [&](std::string_view suffix) {
    return name.size() > suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
  };
  return ends_with(".json") || ends_with(".ndjson");
}

inbox::inbox(std::string dir, intake& records) : dir_(std::move(dir)), intake_(records) {
  std::error_code ec;
  for (const char* sub : {"processed", "rejected"}) {
    fs::create_directories(fs::path(dir_) / sub, ec);
    if (ec) throw config_error("setting inbox.dir: cannot create " + (fs::path(dir_) / sub).string());
  }
}

int inbox::scan(outbox& store) {
  std::vector<std::pair<fs::file_time_type, std::string>> found;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir_, ec)) {
    const std::string name = entry.path().filename().string();
    if (entry.is_regular_file(ec) && inbox_takes(name)) found.emplace_back(entry.last_write_time(ec), name);
  }
  std::sort(found.begin(), found.end());
  int taken = 0;
  for (const auto& [when, name] : found) {
    try {
      // Another instance sharing the store and this folder may have this file now: it is theirs.
      if (!store.hold_intake_file(name)) continue;
      struct release {
        outbox& store;
        const std::string& name;
        ~release() { store.release_intake_file(name); }
      } held{store, name};
      // Taken by another instance since the listing: gone, or a newer file under its name.
      std::error_code gone;
      if (!fs::is_regular_file(fs::path(dir_) / name, gone)) continue;
      taken += take(store, name) ? 1 : 0;
    } catch (const store_error& e) {  // the store busy or full: this file waits for the next scan
      if (reported_.insert(name).second) {
        std::fprintf(stderr, "migraine-connector: an inbox file could not be ingested (%s); will try again\n", e.what());
      }
    } catch (const std::exception&) {
      // A filesystem error names the file's path, which may be made of patient data: not printed.
      if (reported_.insert(name).second) {
        std::fprintf(stderr, "migraine-connector: an inbox file could not be read or moved (check the folder's "
                             "permissions and free space); will try again\n");
      }
    }
  }
  return taken;
}

void inbox::refuse_too_large(const std::string& name) {
  const fs::path target = free_name(fs::path(dir_) / "rejected", name);
  write_file_atomically(target.string() + ".errors.json",
                        "{\"error\":\"larger than 64 MiB: split it into smaller files\"}\n");
  fs::rename(fs::path(dir_) / name, target);
  std::fprintf(stderr, "migraine-connector: an inbox file over 64 MiB was moved to rejected/ unread\n");
}

// True when the file's records are in the store.
bool inbox::take(outbox& store, const std::string& name) {
  const fs::path path = fs::path(dir_) / name;
  std::error_code size_error;
  if (fs::file_size(path, size_error) > max_file_bytes && !size_error) {
    refuse_too_large(name);
    return false;
  }
  const record_file file = read_record_file(path.string());
  if (!file.error.empty()) {
    if (reported_.insert(name).second) {
      std::fprintf(stderr, "migraine-connector: an inbox file cannot be read (check its permissions); will try again\n");
    }
    return false;
  }
  const std::string digest = sha256_hex(file.content);
  const std::string intake_id = "inbox:" + digest;
  const std::string handle = "inbox:" + digest.substr(0, 12);
  const bool seen = store.intake_seen(intake_id);
  const auto results = intake_.take(store, file.records, handle, "inbox", intake_id, !seen);
  if (!seen) failpoint("after_inbox_commit");
  const bool any_rejected = std::any_of(results.begin(), results.end(), [](const auto& r) { return !r.accepted; });
  try {
    if (any_rejected) {
      const fs::path target = free_name(fs::path(dir_) / "rejected", name);
      write_file_atomically(target.string() + ".errors.json", errors_json(handle, results));
      fs::rename(path, target);
    } else {
      fs::rename(path, free_name(fs::path(dir_) / "processed", name));
    }
  } catch (const std::exception&) {
    if (reported_.insert(name).second) {
      std::fprintf(stderr, "migraine-connector: inbox file %s is stored but could not be moved; will try again\n",
                   handle.c_str());
    }
  }
  return true;
}

}  // namespace connector
