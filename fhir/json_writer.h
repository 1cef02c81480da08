// Streaming JSON writer: the one way the project produces JSON text.
// Compact JSON straight into one growing buffer. The small calls are inline: writing is most of
// what mapping a record costs, and a Bundle is thousands of keys, strings and brackets.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

namespace fhir {

class json_writer {
 public:
  json_writer() { open_.reserve(32); }
  json_writer(const json_writer&) = delete;
  json_writer& operator=(const json_writer&) = delete;

  // Forget everything written; the buffer's memory is kept for reuse.
  void clear() {
    used_ = 0;
    open_.clear();
    after_key_ = false;
  }
  // The text written so far (valid until the next write or clear).
  std::string_view view() const { return {text_.data(), used_}; }

  void begin_object() { open('{'); }
  void end_object() { close('}'); }
  void begin_array() { open('['); }
  void end_array() { close(']'); }
  void key(std::string_view k) {
    separate();
    quoted(k);
    put(':');
    after_key_ = true;
  }
  // A key written as a literal (element names: nearly every key): when it needs no escaping,
  // which the compiler works out from the literal, it is copied with its quotes in one go.
  template <std::size_t N>
  void key(const char (&k)[N]) {
    if (!plain_name(k, N - 1)) {
      key(std::string_view(k, N - 1));
      return;
    }
    separate();
    char* out = reserve(N + 2);
    out[0] = '"';
    std::memcpy(out + 1, k, N - 1);
    out[N] = '"';
    out[N + 1] = ':';
    used_ += N + 2;
    after_key_ = true;
  }
  void string(std::string_view s) {
    separate();
    quoted(s);
  }
  void integer(std::int64_t n);
  // FHIR decimals: whole numbers are written without a fraction ("155", not "155.0").
  void number(double d);
  void boolean(bool b) {
    separate();
    if (b) {
      put("true", 4);
    } else {
      put("false", 5);
    }
  }
  // An already-serialised JSON value (an object, array, string...), copied as it is: for
  // fragments rendered once and written many times, such as code-table concepts.
  void raw(std::string_view json) {
    separate();
    put(json.data(), json.size());
  }

  // Shorthands for the common "key": value pair (K: a literal or a string_view).
  template <typename K>
  void member(const K& k, std::string_view s) { key(k); string(s); }
  template <typename K>
  void member(const K& k, const char* s) { key(k); string(s); }
  template <typename K>
  void member(const K& k, std::int64_t n) { key(k); integer(n); }
  template <typename K>
  void member(const K& k, int n) { key(k); integer(n); }
  template <typename K>
  void member_number(const K& k, double d) { key(k); number(d); }
  template <typename K>
  void member_bool(const K& k, bool b) { key(k); boolean(b); }

 private:
  char* reserve(std::size_t n) {
    if (used_ + n > text_.size()) grow(n);
    return text_.data() + used_;
  }
  void grow(std::size_t n);
  void put(char c) {
    *reserve(1) = c;
    ++used_;
  }
  void put(const char* s, std::size_t n) {
    std::memcpy(reserve(n), s, n);
    used_ += n;
  }
  // The comma between siblings; none after a key.
  void separate() {
    if (after_key_) {
      after_key_ = false;
      return;
    }
    if (!open_.empty()) {
      if (open_.back() != 0) put(',');
      open_.back() = 1;
    }
  }
  void open(char bracket) {
    separate();
    put(bracket);
    open_.push_back(0);
  }
  void close(char bracket) {
    put(bracket);
    open_.pop_back();
  }
  // The string in quotes, escaped as JSON requires.
  void quoted(std::string_view s);
  static constexpr bool plain_name(const char* k, std::size_t n) {
    for (std::size_t i = 0; i < n; ++i) {
      const char c = k[i];
      if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-')) {
        return false;
      }
    }
    return true;
  }

  std::vector<char> text_;  // size() is the capacity, used_ the bytes written
  std::size_t used_ = 0;
  std::vector<char> open_;  // per open object or array: whether it holds something yet
  bool after_key_ = false;
};

// Re-indent compact JSON for people to read. Returns the input unchanged if it is not valid JSON.
std::string pretty_json(std::string_view compact);

}  // namespace fhir
