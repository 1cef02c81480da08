// Streaming JSON writer: the one way the project produces JSON text.
// Wraps RapidJSON's Writer behind a small interface so RapidJSON stays out of headers.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace fhir {

class json_writer {
 public:
  json_writer();
  ~json_writer();
  json_writer(const json_writer&) = delete;
  json_writer& operator=(const json_writer&) = delete;

  // Forget everything written; the buffer's memory is kept for reuse.
  void clear();
  // The text written so far (valid until the next write or clear).
  std::string_view view() const;

  void begin_object();
  void end_object();
  void begin_array();
  void end_array();
  void key(std::string_view k);
  void string(std::string_view s);
  void integer(std::int64_t n);
  // FHIR decimals: whole numbers are written without a fraction ("155", not "155.0").
  void number(double d);
  void boolean(bool b);
  // An already-serialised JSON value (an object, array, string...), copied as it is: for
  // fragments rendered once and written many times, such as code-table concepts.
  void raw(std::string_view json);

  // Shorthands for the common "key": value pair.
  void member(std::string_view k, std::string_view s) { key(k); string(s); }
  void member(std::string_view k, const char* s) { key(k); string(s); }
  void member(std::string_view k, std::int64_t n) { key(k); integer(n); }
  void member(std::string_view k, int n) { key(k); integer(n); }
  void member_number(std::string_view k, double d) { key(k); number(d); }
  void member_bool(std::string_view k, bool b) { key(k); boolean(b); }

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

// Re-indent compact JSON for people to read. Returns the input unchanged if it is not valid JSON.
std::string pretty_json(std::string_view compact);

}  // namespace fhir
