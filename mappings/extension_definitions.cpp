#include "mappings/extension_definitions.h"

#include <rapidjson/document.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <vector>

namespace mappings {
namespace {

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(path.string() + ": cannot be read");
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// Every occurrence of the shipped canonical prefix of an extension: the url, the fixed
// Extension.url in the snapshot and the differential. Nothing else in the files names it.
std::string rebased(std::string text, const std::string& identifier_system) {
  const std::string from = std::string(shipped_canonical_base) + "/StructureDefinition/";
  const std::string to = identifier_system + "/StructureDefinition/";
  for (std::size_t at = text.find(from); at != std::string::npos; at = text.find(from, at + to.size())) {
    text.replace(at, from.size(), to);
  }
  return text;
}

}  // namespace

std::string extension_definitions(const std::string& profiles_dir, const std::string& identifier_system) {
  std::vector<std::filesystem::path> files;
  for (const auto& entry : std::filesystem::directory_iterator(profiles_dir)) {
    if (entry.path().extension() == ".json") files.push_back(entry.path());
  }
  std::sort(files.begin(), files.end());
  if (files.empty()) throw std::runtime_error(profiles_dir + ": no StructureDefinition files");
  std::string bundle = R"({"resourceType":"Bundle","type":"collection","entry":[)";
  for (std::size_t i = 0; i < files.size(); ++i) {
    const std::string text = rebased(read_file(files[i]), identifier_system);
    rapidjson::Document doc;
    doc.Parse(text.data(), text.size());
    if (doc.HasParseError() || !doc.IsObject() || !doc.HasMember("resourceType") ||
        !doc["resourceType"].IsString() || std::string_view(doc["resourceType"].GetString()) != "StructureDefinition" ||
        !doc.HasMember("url") || !doc["url"].IsString()) {
      throw std::runtime_error(files[i].string() + ": not a StructureDefinition with a url");
    }
    if (i > 0) bundle += ',';
    bundle += R"({"fullUrl":")" + std::string(doc["url"].GetString()) + R"(","resource":)" + text + "}";
  }
  bundle += "]}";
  return bundle;
}

}  // namespace mappings
