// The code tables and the mapper rendered from them, as one unit: a record is read and mapped
// against one version of the tables from start to end. The daemon reads the tables again on
// SIGHUP and replaces the unit whole; a job already running keeps the version it started with.
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <utility>

#include "mappings/bundle_mapper.h"
#include "mappings/code_tables.h"
#include "mappings/mapping_config.h"

namespace mappings {

class mapping_set {
 public:
  mapping_set(code_tables tables, const mapping_config& config)
      : tables_(std::move(tables)), mapper_(config, tables_) {}
  mapping_set(const mapping_set&) = delete;  // the mapper refers to tables_
  mapping_set& operator=(const mapping_set&) = delete;

  // Throws std::runtime_error naming the file and the entry (code_tables::load).
  static std::shared_ptr<const mapping_set> load(const std::string& tables_path, const mapping_config& config) {
    return std::make_shared<const mapping_set>(code_tables::load(tables_path, config.local_code_system), config);
  }

  const code_tables& tables() const { return tables_; }
  const bundle_mapper& mapper() const { return mapper_; }

 private:
  code_tables tables_;
  bundle_mapper mapper_;
};

// The set in use, shared by the threads that read and map records (intake, delivery).
class mapping_source {
 public:
  explicit mapping_source(std::shared_ptr<const mapping_set> first) : current_(std::move(first)) {}

  std::shared_ptr<const mapping_set> current() const {
    std::lock_guard lock(mutex_);
    return current_;
  }
  void replace(std::shared_ptr<const mapping_set> next) {
    std::lock_guard lock(mutex_);
    current_ = std::move(next);
  }

 private:
  mutable std::mutex mutex_;
  std::shared_ptr<const mapping_set> current_;
};

}  // namespace mappings
