// Keyed patient hashes: stable, secret-dependent, and a key file only its owner can read.
#include "connector/config/patient_key.h"

#include <sys/stat.h>

#include <cstdlib>
#include <filesystem>

#include <gtest/gtest.h>

namespace {

namespace fs = std::filesystem;

TEST(patient_key, is_stable_for_a_secret_and_hides_the_mrn) {
  const connector::patient_key a("secret-one-0123456789");
  const connector::patient_key b("secret-two-0123456789");
  EXPECT_EQ(a.of("MRN-100234"), a.of("MRN-100234"));
  EXPECT_NE(a.of("MRN-100234"), a.of("MRN-100235"));
  EXPECT_NE(a.of("MRN-100234"), b.of("MRN-100234"));
  EXPECT_EQ(a.of("MRN-100234").size(), 32u);
  EXPECT_EQ(a.of("MRN-100234").find("100234"), std::string::npos);
}

TEST(patient_key, creates_an_owner_only_key_file_once_and_reuses_it) {
  ::unsetenv("MIGRAINE_PATIENT_KEY");
  const fs::path file = fs::temp_directory_path() / ("patient-key-test-" + std::to_string(::getpid()));
  fs::remove(file);
  const auto first = connector::patient_key::load(file.string());
  struct stat st{};
  ASSERT_EQ(::stat(file.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(connector::patient_key::load(file.string()).of("M-1"), first.of("M-1"));
  fs::remove(file);
}

TEST(patient_key, the_environment_overrides_the_file) {
  ::setenv("MIGRAINE_PATIENT_KEY", "from-the-environment-123", 1);
  const auto k = connector::patient_key::load("/nonexistent/never-created");
  EXPECT_EQ(k.of("M-1"), connector::patient_key("from-the-environment-123").of("M-1"));
  ::unsetenv("MIGRAINE_PATIENT_KEY");
}

}  // namespace
