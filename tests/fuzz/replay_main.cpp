// Replays inputs through a fuzz target once each, for the ordinary (g++) build: the seed corpora
// become regression tests in ctest. Usage: TARGET_replay PATH... where each PATH is a file or a
// folder (read recursively, in name order, hidden files skipped). Exits 1 when a path is missing
// or no input at all was found, so a lost corpus cannot pass as an empty one.
//
// Each input is copied into a heap block of exactly its size, as libFuzzer does, so a read past
// its end is an AddressSanitizer report in the sanitizer build (deploy/test.sh --sanitize).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <system_error>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);
extern "C" __attribute__((weak)) int LLVMFuzzerInitialize(int* argc, char*** argv);

namespace {

namespace fs = std::filesystem;

bool hidden(const fs::path& p) {
  const std::string name = p.filename().string();
  return !name.empty() && name[0] == '.';
}

void collect(const fs::path& path, std::vector<fs::path>& out, bool& missing) {
  std::error_code ec;
  if (fs::is_regular_file(path, ec)) {
    out.push_back(path);
    return;
  }
  if (!fs::is_directory(path, ec)) {
    std::fprintf(stderr, "replay: %s: no such file or folder\n", path.c_str());
    missing = true;
    return;
  }
  std::vector<fs::path> found;
  for (auto it = fs::recursive_directory_iterator(path, ec); !ec && it != fs::recursive_directory_iterator();
       it.increment(ec)) {
    if (hidden(it->path())) {
      if (it->is_directory()) it.disable_recursion_pending();
      continue;
    }
    if (it->is_regular_file()) found.push_back(it->path());
  }
  if (ec) {
    std::fprintf(stderr, "replay: %s: %s\n", path.c_str(), ec.message().c_str());
    missing = true;
  }
  std::sort(found.begin(), found.end());
  out.insert(out.end(), found.begin(), found.end());
}

bool read_all(const fs::path& path, std::vector<char>& bytes) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  bytes.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  return !in.bad();
}

}  // namespace

int main(int argc, char** argv) {
  if (LLVMFuzzerInitialize != nullptr) LLVMFuzzerInitialize(&argc, &argv);
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s FILE_OR_FOLDER...\n", argv[0]);
    return 2;
  }
  std::vector<fs::path> inputs;
  bool missing = false;
  for (int i = 1; i < argc; ++i) collect(argv[i], inputs, missing);
  if (missing) return 1;
  if (inputs.empty()) {
    std::fprintf(stderr, "replay: no inputs found\n");
    return 1;
  }
  std::vector<char> bytes;
  for (const auto& path : inputs) {
    if (!read_all(path, bytes)) {
      std::fprintf(stderr, "replay: %s: cannot be read\n", path.c_str());
      return 1;
    }
    // Exactly the input's size, as libFuzzer passes it (new[0] is a valid, unreadable block).
    auto copy = std::make_unique<std::uint8_t[]>(bytes.size());
    std::copy(bytes.begin(), bytes.end(), copy.get());
    std::fprintf(stderr, "replay: %s (%zu bytes)\n", path.c_str(), bytes.size());
    LLVMFuzzerTestOneInput(copy.get(), bytes.size());
  }
  std::printf("replay: %zu inputs ran without a finding\n", inputs.size());
  return 0;
}
