// Keyed patient hashes: stable, secret-dependent, a key file only its owner can read, and one key
// per store: a process with another key is refused, and a key file is created only for a new store.
#include "connector/config/patient_key.h"

#include <sys/stat.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include "connector/config/config.h"
#include "connector/outbox/sqlite_outbox.h"

namespace {

namespace fs = std::filesystem;
using connector::config_error;
using connector::patient_key;
using connector::sqlite_outbox;

class patient_key_test : public testing::Test {
 protected:
  void SetUp() override {
    ::unsetenv("MIGRAINE_PATIENT_KEY");
    dir_ = fs::temp_directory_path() / ("patient-key-test-" + std::to_string(::getpid()) + "-" +
                                        testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    store_path_ = (dir_ / "outbox.db").string();
    key_file_ = (dir_ / "outbox.db.key").string();
  }
  void TearDown() override {
    ::unsetenv("MIGRAINE_PATIENT_KEY");
    fs::remove_all(dir_);
  }
  static void write(const std::string& path, const std::string& text) { std::ofstream(path) << text << "\n"; }

  // The error message of opening the key for the store, or "" when it opened.
  std::string refusal() {
    sqlite_outbox store(store_path_);
    try {
      patient_key::open_for(store, key_file_);
      return "";
    } catch (const config_error& e) {
      return e.what();
    }
  }

  fs::path dir_;
  std::string store_path_, key_file_;
};

TEST(patient_key, is_stable_for_a_secret_and_hides_the_mrn) {
  const patient_key a("secret-one-0123456789");
  const patient_key b("secret-two-0123456789");
  EXPECT_EQ(a.of("MRN-100234"), a.of("MRN-100234"));
  EXPECT_NE(a.of("MRN-100234"), a.of("MRN-100235"));
  EXPECT_NE(a.of("MRN-100234"), b.of("MRN-100234"));
  EXPECT_EQ(a.of("MRN-100234").size(), 32u);
  EXPECT_EQ(a.of("MRN-100234").find("100234"), std::string::npos);
  EXPECT_NE(a.fingerprint(), b.fingerprint());
  EXPECT_EQ(a.fingerprint().size(), 16u);
  EXPECT_EQ(std::string("secret-one-0123456789").find(a.fingerprint()), std::string::npos);
}

TEST_F(patient_key_test, a_new_store_gets_an_owner_only_key_file_once_and_keeps_its_fingerprint) {
  std::string first;
  {
    sqlite_outbox store(store_path_);
    first = patient_key::open_for(store, key_file_).of("M-1");
    EXPECT_EQ(store.patient_key_fingerprint(), patient_key::open_for(store, key_file_).fingerprint());
  }
  struct stat st{};
  ASSERT_EQ(::stat(key_file_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  sqlite_outbox again(store_path_);
  EXPECT_EQ(patient_key::open_for(again, key_file_).of("M-1"), first);
}

TEST_F(patient_key_test, another_key_from_the_environment_is_refused_naming_its_source) {
  refusal();  // creates the store with a fresh key file
  fs::remove(key_file_);
  ::setenv("MIGRAINE_PATIENT_KEY", "some-other-key-0123456789", 1);
  const std::string why = refusal();
  EXPECT_NE(why.find("MIGRAINE_PATIENT_KEY"), std::string::npos) << why;
  EXPECT_NE(why.find("not the key this store was created with"), std::string::npos) << why;
  EXPECT_EQ(why.find("some-other-key"), std::string::npos) << "the key itself must never be printed";
}

TEST_F(patient_key_test, another_key_file_is_refused_naming_the_setting) {
  refusal();
  write(key_file_, "a-replaced-key-file-0123456789");
  const std::string why = refusal();
  EXPECT_NE(why.find("store.patient_key_file " + key_file_), std::string::npos) << why;
  EXPECT_NE(why.find("not the key this store was created with"), std::string::npos) << why;
}

TEST_F(patient_key_test, a_missing_key_file_is_not_created_for_a_store_that_holds_records) {
  {
    sqlite_outbox store(store_path_);
    store.enqueue({{"P-1", 1, "procedure", "lane", "{}"}}, {}, 1000);  // hashed by some key, none recorded
  }
  const std::string why = refusal();
  EXPECT_NE(why.find("does not exist, but this store already holds records"), std::string::npos) << why;
  EXPECT_FALSE(fs::exists(key_file_));
}

TEST_F(patient_key_test, a_deleted_key_file_is_not_silently_replaced) {
  refusal();
  fs::remove(key_file_);
  const std::string why = refusal();
  EXPECT_NE(why.find("fingerprint"), std::string::npos) << why;
  EXPECT_FALSE(fs::exists(key_file_));
}

TEST_F(patient_key_test, the_environment_and_the_file_must_agree) {
  write(key_file_, "the-key-in-the-file-0123456789");
  ::setenv("MIGRAINE_PATIENT_KEY", "the-key-in-the-env-0123456789", 1);
  const std::string why = refusal();
  EXPECT_NE(why.find("hold different patient keys"), std::string::npos) << why;
}

TEST_F(patient_key_test, the_environment_alone_serves_a_store_created_with_it) {
  ::setenv("MIGRAINE_PATIENT_KEY", "from-the-environment-123", 1);
  EXPECT_EQ(refusal(), "");
  EXPECT_FALSE(fs::exists(key_file_)) << "no key file is written when the key comes from the environment";
  EXPECT_EQ(refusal(), "");
  sqlite_outbox store(store_path_);
  EXPECT_EQ(patient_key::open_for(store, key_file_).of("M-1"), patient_key("from-the-environment-123").of("M-1"));
}

TEST_F(patient_key_test, a_store_from_before_fingerprints_adopts_its_key) {
  write(key_file_, "the-old-stores-key-0123456789");
  {
    sqlite_outbox store(store_path_);
    store.enqueue({{"P-1", 1, "procedure", "lane", "{}"}}, {}, 1000);
    EXPECT_FALSE(store.patient_key_fingerprint());
  }
  EXPECT_EQ(refusal(), "");
  sqlite_outbox store(store_path_);
  EXPECT_EQ(store.patient_key_fingerprint(), patient_key("the-old-stores-key-0123456789").fingerprint());
}

}  // namespace
