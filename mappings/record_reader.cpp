// Clinic record reader: JSON -> clinic_record, every problem reported with its field path.
// Structure and types first (each field on its own), then the contract's cross-field reject rules.
#include "mappings/record_reader.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <initializer_list>

#include "fhir/json_parse.h"
#include "mappings/contract_names.h"
#include "mappings/preempt.h"

namespace mappings {
namespace {

using rapidjson::Value;

// Collects problems at the current field path. The path is one growing string: entering a field
// appends ".name" or "[i]" and leaving it truncates again, so reading a valid record allocates no
// paths at all.
class problem_sink {
 public:
  problem_sink(std::string root, fhir::issues& out) : path_(std::move(root)), out_(out) {}

  class scope {
   public:
    scope(std::string& path, std::size_t restore) : path_(path), restore_(restore) {}
    ~scope() { path_.resize(restore_); }
    scope(const scope&) = delete;
    scope& operator=(const scope&) = delete;

   private:
    std::string& path_;
    std::size_t restore_;
  };

  [[nodiscard]] scope field(std::string_view name) {
    std::size_t before = path_.size();
    path_ += '.';
    path_ += name;
    return {path_, before};
  }
  [[nodiscard]] scope index(std::size_t i) {
    std::size_t before = path_.size();
    path_ += '[';
    path_ += std::to_string(i);
    path_ += ']';
    return {path_, before};
  }

  void report(std::string_view type, std::string message) {
    out_.push_back({fhir::severity::error, type, path_, std::move(message)});
  }
  // A problem of a field of the current object, reported without entering it.
  void report_field(std::string_view name, std::string_view type, std::string message) {
    auto s = field(name);
    report(type, std::move(message));
  }
  std::size_t count() const { return out_.size(); }

 private:
  std::string path_;
  fhir::issues& out_;
};

enum class need { required, optional };

// Free text may run over lines (notes, a reaction described); everything else is one line.
enum class text_kind { single_line, free_text };

// Why `s` cannot go into a FHIR string, or empty: it must be valid UTF-8 (no overlong forms, no
// encoded surrogates: a lone "\udc00" escape arrives as one), and FHIR R4 forbids code points
// below U+0020 except tab, CR and LF, which only free text may hold. Names the character by its
// code point, never the text around it.
std::string string_problem(std::string_view s, text_kind kind) {
  for (std::size_t i = 0; i < s.size();) {
    // Eight printable ASCII bytes at a time (nearly all text): none below 0x20, none above 0x7F.
    if (s.size() - i >= 8) {
      std::uint64_t w;
      std::memcpy(&w, s.data() + i, 8);
      constexpr std::uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
      if (((w | ((w - ones * 0x20) & ~w)) & highs) == 0) {
        i += 8;
        continue;
      }
    }
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x20) {
      if (c == '\t' || c == '\r' || c == '\n') {
        if (kind == text_kind::single_line) return "must be a single line (it holds a tab or a line break)";
      } else {
        char hex[8];
        std::snprintf(hex, sizeof hex, "U+%04X", c);
        return std::string("holds the control character ") + hex + ", which FHIR strings may not contain";
      }
      ++i;
      continue;
    }
    if (c < 0x80) {
      ++i;
      continue;
    }
    // The length of the sequence and the smallest code point it may encode (no overlong forms).
    std::size_t n = 0;
    std::uint32_t cp = 0, min = 0;
    if ((c & 0xE0) == 0xC0) n = 2, cp = c & 0x1F, min = 0x80;
    else if ((c & 0xF0) == 0xE0) n = 3, cp = c & 0x0F, min = 0x800;
    else if ((c & 0xF8) == 0xF0) n = 4, cp = c & 0x07, min = 0x10000;
    else return "is not valid UTF-8 text";
    if (i + n > s.size()) return "is not valid UTF-8 text";
    for (std::size_t k = 1; k < n; ++k) {
      const auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) return "is not valid UTF-8 text";
      cp = (cp << 6) | (cc & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF) return "is not valid UTF-8 text";
    if (cp >= 0xD800 && cp <= 0xDFFF) return "holds a lone UTF-16 surrogate, which is not a character";
    i += n;
  }
  return {};
}

// --- field readers: each reports its own problem and returns nullopt on any ---------------------

const Value* member(const Value& obj, std::string_view name) {
  auto it = obj.FindMember(rapidjson::StringRef(name.data(), name.size()));
  return it == obj.MemberEnd() ? nullptr : &it->value;
}

// The field's value, or nullptr when absent (reported if required). null is refused rather than
// read as absent, as the JSON Schema does: one contract, one answer.
const Value* present(problem_sink& sink, const Value& obj, std::string_view name, need n) {
  const Value* v = member(obj, name);
  if (v == nullptr) {
    if (n == need::required) sink.report_field(name, "required", "is required");
    return nullptr;
  }
  if (v->IsNull()) {
    sink.report_field(name, "value", "must not be null (leave the field out instead)");
    return nullptr;
  }
  return v;
}

// The contract's names are lower-case snake_case; a key with a capital letter ("Smith", "Jane")
// is more likely a value that became a key, and a value may be patient data.
bool looks_like_field_name(std::string_view name) {
  auto lower = [](char c) { return c >= 'a' && c <= 'z'; };
  if (name.empty() || name.size() > 40 || !lower(name[0])) return false;
  return std::all_of(name.begin(), name.end(),
                     [&](char c) { return lower(c) || (c >= '0' && c <= '9') || c == '_'; });
}

// Reports every member of obj that is in none of the known lists.
void check_known_fields(problem_sink& sink, const Value& obj,
                        std::initializer_list<std::string_view> known,
                        std::initializer_list<std::string_view> also_known = {}) {
  auto is_known = [&](std::string_view name) {
    return std::find(known.begin(), known.end(), name) != known.end() ||
           std::find(also_known.begin(), also_known.end(), name) != also_known.end();
  };
  int position = 0;
  for (const auto& m : obj.GetObject()) {
    ++position;
    std::string_view name(m.name.GetString(), m.name.GetStringLength());
    if (is_known(name)) continue;
    // A misplaced value can end up as a key ("John Smith 1970-01-01"): only identifier-shaped
    // names (a letter, then letters, digits, _) are echoed, as typos are; others by position.
    std::string lowered(name);
    std::transform(lowered.begin(), lowered.end(), lowered.begin(),
                   [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; });
    if (looks_like_field_name(name) || is_known(lowered)) {  // "Extra": a known field with a capital
      sink.report_field(name, "structure", "unknown field (not in clinic record v1)");
    } else {
      sink.report_field("(field " + std::to_string(position) + ")", "structure",
                        "unknown field; its name is not shown because it does not look like a "
                        "field name (it may be data)");
    }
  }
}

std::optional<std::string> read_string(problem_sink& sink, const Value& obj, std::string_view name,
                                       need n, text_kind kind = text_kind::single_line) {
  const Value* v = present(sink, obj, name, n);
  if (v == nullptr) return std::nullopt;
  if (!v->IsString()) {
    sink.report_field(name, "value", "must be a string");
    return std::nullopt;
  }
  std::string s(v->GetString(), v->GetStringLength());
  if (s.find_first_not_of(" \t\r\n") == std::string::npos) {
    sink.report_field(name, "value", "must not be empty");
    return std::nullopt;
  }
  if (const std::string why = string_problem(s, kind); !why.empty()) {
    sink.report_field(name, "value", why);
    return std::nullopt;
  }
  return s;
}

std::optional<double> read_number(problem_sink& sink, const Value& obj, std::string_view name,
                                  need n) {
  const Value* v = present(sink, obj, name, n);
  if (v == nullptr) return std::nullopt;
  if (!v->IsNumber()) {
    sink.report_field(name, "value", "must be a number");
    return std::nullopt;
  }
  return v->GetDouble();
}

// Whole numbers only; 3.0 is accepted as 3 (as JSON Schema's "integer" does).
std::optional<int> read_integer(problem_sink& sink, const Value& obj, std::string_view name, need n,
                                int min, int max) {
  const Value* v = present(sink, obj, name, n);
  if (v == nullptr) return std::nullopt;
  if (!v->IsNumber() || std::floor(v->GetDouble()) != v->GetDouble()) {
    sink.report_field(name, "value", "must be a whole number");
    return std::nullopt;
  }
  double d = v->GetDouble();
  if (d < min || d > max) {
    sink.report_field(name, "value",
                      max == INT32_MAX ? "must be >= " + std::to_string(min)
                                       : "must be between " + std::to_string(min) + " and " +
                                             std::to_string(max));
    return std::nullopt;
  }
  return static_cast<int>(d);
}

std::optional<bool> read_bool(problem_sink& sink, const Value& obj, std::string_view name, need n) {
  const Value* v = present(sink, obj, name, n);
  if (v == nullptr) return std::nullopt;
  if (!v->IsBool()) {
    sink.report_field(name, "value", "must be true or false");
    return std::nullopt;
  }
  return v->GetBool();
}

template <typename E, std::size_t N>
std::optional<E> read_enum(problem_sink& sink, const Value& obj, std::string_view name, need n,
                           const name_table<E, N>& table) {
  const Value* v = present(sink, obj, name, n);
  if (v == nullptr) return std::nullopt;
  std::optional<E> parsed;
  if (v->IsString()) parsed = parse_name(table, {v->GetString(), v->GetStringLength()});
  if (!parsed) {
    // The value itself is not echoed: a misplaced value could be patient data.
    std::string allowed;
    for (const auto& [value, spelled] : table) {
      if (!allowed.empty()) allowed += ", ";
      allowed += spelled;
    }
    sink.report_field(name, "code-invalid", "must be one of: " + allowed);
  }
  return parsed;
}

std::optional<civil_date> read_date(problem_sink& sink, const Value& obj, std::string_view name,
                                    need n) {
  const Value* v = present(sink, obj, name, n);
  if (v == nullptr) return std::nullopt;
  std::optional<civil_date> d;
  if (v->IsString()) d = parse_date({v->GetString(), v->GetStringLength()});
  if (!d) sink.report_field(name, "value", "must be a calendar date YYYY-MM-DD");
  return d;
}

std::optional<date_time> read_date_time(problem_sink& sink, const Value& obj,
                                        std::string_view name, need n) {
  const Value* v = present(sink, obj, name, n);
  if (v == nullptr) return std::nullopt;
  std::optional<date_time> dt;
  if (v->IsString()) dt = parse_date_time({v->GetString(), v->GetStringLength()});
  if (!dt) {
    sink.report_field(name, "value",
                      "must be an RFC 3339 date-time with seconds and an offset, e.g. "
                      "2026-11-20T09:30:00-05:00");
  }
  return dt;
}

// Checks `name` is an object and returns it (nullptr when absent or not an object).
const Value* read_object(problem_sink& sink, const Value& obj, std::string_view name, need n) {
  const Value* v = present(sink, obj, name, n);
  if (v != nullptr && !v->IsObject()) {
    sink.report_field(name, "value", "must be an object");
    return nullptr;
  }
  return v;
}

const Value* read_array(problem_sink& sink, const Value& obj, std::string_view name, need n) {
  const Value* v = present(sink, obj, name, n);
  if (v != nullptr && !v->IsArray()) {
    sink.report_field(name, "value", "must be an array");
    return nullptr;
  }
  return v;
}

std::vector<std::string> read_string_array(problem_sink& sink, const Value& obj,
                                           std::string_view name, need n, bool non_empty) {
  std::vector<std::string> out;
  const Value* arr = read_array(sink, obj, name, n);
  if (arr == nullptr) return out;
  auto f = sink.field(name);
  if (non_empty && arr->Empty()) sink.report("required", "must list at least one entry");
  for (rapidjson::SizeType i = 0; i < arr->Size(); ++i) {
    auto at = sink.index(i);
    const Value& item = (*arr)[i];
    if (!item.IsString() || item.GetStringLength() == 0) {
      sink.report("value", "must be a non-empty string");
    } else if (const std::string why = string_problem({item.GetString(), item.GetStringLength()}, text_kind::single_line);
               !why.empty()) {
      sink.report("value", why);
    } else {
      out.emplace_back(item.GetString(), item.GetStringLength());
    }
  }
  return out;
}

// --- the contract's pieces ------------------------------------------------------------------

bool is_valid_record_id(std::string_view id) {
  if (id.empty() || id.size() > 64) return false;
  return std::all_of(id.begin(), id.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-';
  });
}

// A reference to another record: the same shape as record_id.
std::optional<std::string> read_record_ref(problem_sink& sink, const Value& obj,
                                           std::string_view name, need n) {
  auto id = read_string(sink, obj, name, n);
  if (id && !is_valid_record_id(*id)) {
    sink.report_field(name, "value", "must be 1-64 characters of A-Z a-z 0-9 . _ -");
    return std::nullopt;
  }
  return id;
}

person_name read_name(problem_sink& sink, const Value& owner) {
  person_name name;
  const Value* obj = read_object(sink, owner, "name", need::required);
  if (obj == nullptr) return name;
  auto f = sink.field("name");
  check_known_fields(sink, *obj, {"family", "given"});
  name.family = read_string(sink, *obj, "family", need::required).value_or("");
  name.given = read_string_array(sink, *obj, "given", need::required, true);
  return name;
}

// BCP-47 as US Core's simple-language value set has it: a 2-3 letter lower-case language, then
// optional subtags of 2-8 letters or digits ("en", "es-MX", "zh-Hant").
bool is_language_tag(std::string_view s) {
  std::size_t part = 0, length = 0;
  for (std::size_t i = 0; i <= s.size(); ++i) {
    if (i == s.size() || s[i] == '-') {
      if (part == 0 ? (length < 2 || length > 3) : (length < 2 || length > 8)) return false;
      ++part;
      length = 0;
      continue;
    }
    const char c = s[i];
    const bool ok = part == 0 ? (c >= 'a' && c <= 'z') : std::isalnum(static_cast<unsigned char>(c)) != 0;
    if (!ok) return false;
    ++length;
  }
  return true;
}

void read_address(problem_sink& sink, const Value& patient, patient_info& p) {
  const Value* obj = read_object(sink, patient, "address", need::optional);
  if (obj == nullptr) return;
  auto f = sink.field("address");
  check_known_fields(sink, *obj, {"line", "city", "state", "postal_code", "country"});
  postal_address a;
  a.line = read_string_array(sink, *obj, "line", need::optional, false);
  if (a.line.size() > 4) {
    auto at = sink.field("line");
    sink.report("value", "must hold at most 4 lines");
  }
  a.city = read_string(sink, *obj, "city", need::optional);
  a.state = read_string(sink, *obj, "state", need::optional);
  a.postal_code = read_string(sink, *obj, "postal_code", need::optional);
  a.country = read_string(sink, *obj, "country", need::optional);
  if (a.line.empty() && !a.city && !a.state && !a.postal_code && !a.country) {
    sink.report("required", "must give at least one of line, city, state, postal_code, country");
    return;
  }
  p.address = std::move(a);
}

void read_race(problem_sink& sink, const Value& patient, patient_info& p) {
  const Value* arr = read_array(sink, patient, "race", need::optional);
  if (arr == nullptr) return;
  auto f = sink.field("race");
  for (rapidjson::SizeType i = 0; i < arr->Size(); ++i) {
    auto at = sink.index(i);
    const Value& item = (*arr)[i];
    const auto r = item.IsString() ? parse_name(race_names, {item.GetString(), item.GetStringLength()}) : std::nullopt;
    if (!r) {
      std::string allowed;
      for (const auto& [value, spelled] : race_names) allowed += (allowed.empty() ? "" : ", ") + std::string(spelled);
      sink.report("code-invalid", "must be one of: " + allowed);
      continue;
    }
    if (std::find(p.race.begin(), p.race.end(), *r) != p.race.end()) {
      sink.report("value", "is listed twice");
      continue;
    }
    p.race.push_back(*r);
  }
  const bool reason = std::any_of(p.race.begin(), p.race.end(), [](race_category r) {
    return r == race_category::unknown || r == race_category::declined;
  });
  if (reason && p.race.size() > 1) sink.report("value", "unknown or declined must stand alone");
}

void read_patient(problem_sink& sink, const Value& root, patient_info& p) {
  const Value* obj = read_object(sink, root, "patient", need::required);
  if (obj == nullptr) return;
  auto f = sink.field("patient");
  check_known_fields(sink, *obj, {"mrn", "name", "birth_date", "sex", "phone", "phone_use", "email", "email_use",
                                  "address", "race", "ethnicity", "language"});
  p.mrn = read_string(sink, *obj, "mrn", need::required).value_or("");
  p.name = read_name(sink, *obj);
  if (auto d = read_date(sink, *obj, "birth_date", need::required)) p.birth_date = d->iso();
  p.gender = read_enum(sink, *obj, "sex", need::required, sex_names).value_or(sex::unknown);
  p.phone = read_string(sink, *obj, "phone", need::optional);
  p.phone_use = read_enum(sink, *obj, "phone_use", need::optional, contact_use_names);
  if (p.phone_use && !p.phone) sink.report_field("phone_use", "required", "is given without phone");
  p.email = read_string(sink, *obj, "email", need::optional);
  p.email_use = read_enum(sink, *obj, "email_use", need::optional, contact_use_names);
  if (p.email_use && !p.email) sink.report_field("email_use", "required", "is given without email");
  read_address(sink, *obj, p);
  read_race(sink, *obj, p);
  p.ethnicity = read_enum(sink, *obj, "ethnicity", need::optional, ethnicity_names);
  if (auto lang = read_string(sink, *obj, "language", need::optional)) {
    if (is_language_tag(*lang)) {
      p.language = std::move(*lang);
    } else {
      sink.report_field("language", "value", "must be a BCP-47 language tag such as en or es-MX");
    }
  }
}

void read_clinician(problem_sink& sink, const Value& root, clinician_info& c) {
  const Value* obj = read_object(sink, root, "clinician", need::required);
  if (obj == nullptr) return;
  auto f = sink.field("clinician");
  check_known_fields(sink, *obj, {"npi", "name", "credentials"});
  if (auto npi = read_string(sink, *obj, "npi", need::required)) {
    if (npi->size() != 10 || npi->find_first_not_of("0123456789") != std::string::npos) {
      sink.report_field("npi", "value", "must be 10 digits");
    } else if (!is_valid_npi(*npi)) {
      sink.report_field("npi", "invariant", "check digit is not valid (Luhn with prefix 80840)");
    } else {
      c.npi = *npi;
    }
  }
  c.name = read_name(sink, *obj);
  c.credentials = read_string(sink, *obj, "credentials", need::optional);
}

void read_visit(problem_sink& sink, const Value& root, visit_info& v) {
  const Value* obj = read_object(sink, root, "visit", need::required);
  if (obj == nullptr) return;
  auto f = sink.field("visit");
  check_known_fields(sink, *obj, {"start", "end", "location"});
  auto start = read_date_time(sink, *obj, "start", need::required);
  if (start) v.start = *start;
  v.end = read_date_time(sink, *obj, "end", need::optional);
  if (start && v.end && is_before(*v.end, *start)) {
    sink.report_field("end", "invariant", "must not be before visit.start");
  }
  v.location = read_string(sink, *obj, "location", need::optional);
}

void read_scores(problem_sink& sink, const Value& root, scores& s) {
  const Value* obj = read_object(sink, root, "scores", need::optional);
  if (obj == nullptr) return;
  auto f = sink.field("scores");
  check_known_fields(sink, *obj, {"midas", "hit6"});
  s.midas = read_integer(sink, *obj, "midas", need::optional, 0, 270);
  s.hit6 = read_integer(sink, *obj, "hit6", need::optional, 36, 78);
}

// headache and migraine days, with migraine days never above headache days.
void read_day_counts(problem_sink& sink, const Value& root, int& headache, int& migraine) {
  auto h = read_integer(sink, root, "headache_days_per_month", need::required, 0, 31);
  auto m = read_integer(sink, root, "migraine_days_per_month", need::required, 0, 31);
  if (h && m && *m > *h) {
    sink.report_field("migraine_days_per_month", "invariant",
                      "must not exceed headache_days_per_month");
  }
  headache = h.value_or(0);
  migraine = m.value_or(0);
}

// Fields every kind has; each kind adds its own.
const std::initializer_list<std::string_view> envelope_fields = {
    "record_type", "record_id", "revision", "status", "recorded_at",
    "patient",     "clinician", "visit",    "notes",  "extra"};

consultation read_consultation(problem_sink& sink, const Value& root, const code_tables& tables) {
  consultation c;
  read_day_counts(sink, root, c.headache_days_per_month, c.migraine_days_per_month);
  c.months_at_frequency =
      read_integer(sink, root, "months_at_frequency", need::required, 0, limits::max_months).value_or(0);
  if (auto hours = read_number(sink, root, "headache_hours_per_day", need::optional)) {
    if (*hours < 0 || *hours > 24) {
      sink.report_field("headache_hours_per_day", "value", "must be between 0 and 24");
    } else {
      c.headache_hours_per_day = hours;
    }
  }
  c.average_pain = read_integer(sink, root, "average_pain", need::optional, 0, 10);
  c.aura = read_bool(sink, root, "aura", need::optional).value_or(false);
  c.acute_medication_days_per_month =
      read_integer(sink, root, "acute_medication_days_per_month", need::optional, 0, 31);
  c.triggers = read_string_array(sink, root, "triggers", need::optional, false);
  if (const Value* arr = read_array(sink, root, "prior_preventives", need::optional)) {
    auto f = sink.field("prior_preventives");
    for (rapidjson::SizeType i = 0; i < arr->Size(); ++i) {
      auto at = sink.index(i);
      const Value& item = (*arr)[i];
      if (!item.IsObject()) {
        sink.report("value", "must be an object");
        continue;
      }
      check_known_fields(sink, item, {"medication", "drug_class", "weeks", "outcome"});
      prior_preventive p;
      p.medication = read_string(sink, item, "medication", need::required).value_or("");
      p.klass = read_enum(sink, item, "drug_class", need::required, drug_class_names)
                    .value_or(drug_class::other);
      p.weeks = read_integer(sink, item, "weeks", need::optional, 0, limits::max_weeks);
      p.outcome = read_enum(sink, item, "outcome", need::required, preventive_outcome_names)
                      .value_or(preventive_outcome::ongoing);
      c.prior_preventives.push_back(std::move(p));
    }
  }
  read_scores(sink, root, c.score);
  if (auto code = read_string(sink, root, "diagnosis_code", need::required)) {
    if (tables.diagnosis(*code) == nullptr) {
      sink.report_field("diagnosis_code", "code-invalid",
                        "must be an ICD-10-CM chronic migraine code: G43.701, G43.709, G43.711, "
                        "G43.719, G43.E01, G43.E09, G43.E11 or G43.E19");
    } else {
      c.diagnosis_code = *code;
    }
  }
  c.decision = read_enum(sink, root, "decision", need::required, decision_names)
                   .value_or(consultation_decision::defer);
  return c;
}

std::vector<injection> read_injections(problem_sink& sink, const Value& root,
                                       std::string_view name, need n, bool follow_the_pain) {
  std::vector<injection> out;
  const Value* arr = read_array(sink, root, name, n);
  if (arr == nullptr) return out;
  auto f = sink.field(name);
  if (!follow_the_pain && arr->Empty()) sink.report("required", "must list at least one injection");
  for (rapidjson::SizeType i = 0; i < arr->Size(); ++i) {
    auto at = sink.index(i);
    const Value& item = (*arr)[i];
    if (!item.IsObject()) {
      sink.report("value", "must be an object");
      continue;
    }
    check_known_fields(sink, item, {"muscle", "side", "sites", "units"});
    injection inj;
    auto m = read_enum(sink, item, "muscle", need::required, muscle_names);
    if (m && follow_the_pain && *m != muscle::temporalis && *m != muscle::occipitalis &&
        *m != muscle::trapezius) {
      sink.report_field("muscle", "business-rule",
                        "follow-the-pain sites must be temporalis, occipitalis or trapezius");
    }
    auto s = read_enum(sink, item, "side", need::required, side_names);
    auto sites = read_integer(sink, item, "sites", need::required, 1, limits::max_sites);
    const double units = read_number(sink, item, "units", need::required).value_or(0);
    const bool units_read = member(item, "units") != nullptr && item["units"].IsNumber();
    if (units_read && units <= 0) sink.report_field("units", "value", "must be > 0");
    if (units_read && units > limits::max_units_per_line) {
      sink.report_field("units", "value", "must be at most " + format_units(limits::max_units_per_line));
    }
    if (m && s && sites && units > 0 && units <= limits::max_units_per_line) out.push_back({*m, *s, *sites, units});
  }
  return out;
}

procedure read_procedure(problem_sink& sink, const Value& root, const code_tables& tables) {
  procedure p;
  // The vials' capacity is judged only from quantities that were all read cleanly.
  bool quantities_read = true;
  auto track = [&](std::size_t before) { quantities_read = quantities_read && sink.count() == before; };
  p.consultation_record_id = read_record_ref(sink, root, "consultation_record_id", need::optional);
  p.cycle = read_integer(sink, root, "cycle", need::optional, 1, limits::max_cycle);

  const product_entry* product = nullptr;
  if (const Value* obj = read_object(sink, root, "product", need::required)) {
    auto f = sink.field("product");
    check_known_fields(sink, *obj,
                       {"ndc", "lot", "expiration", "vial_units", "vials", "diluent_ml"});
    if (auto ndc = read_string(sink, *obj, "ndc", need::required)) {
      auto ndc11 = normalize_ndc(*ndc);
      if (!ndc11) {
        sink.report_field("ndc", "value",
                          "must be an NDC: 10 digits with dashes (4-4-2, 5-3-2 or 5-4-1) or 11 "
                          "digits (bare or 5-4-2)");
      } else if ((product = tables.product(*ndc11)) == nullptr) {
        sink.report_field("ndc", "business-rule",
                          "is not an NDC of a Botox (onabotulinumtoxinA) 100 U or 200 U vial");
      } else {
        p.product.ndc = *ndc;
        p.product.ndc11 = *ndc11;
      }
    }
    p.product.lot = read_string(sink, *obj, "lot", need::required).value_or("");
    if (auto exp = read_date(sink, *obj, "expiration", need::required)) p.product.expiration = *exp;
    const std::size_t before_vials = sink.count();
    if (auto units = read_integer(sink, *obj, "vial_units", need::required, 0, INT32_MAX)) {
      if (*units != 100 && *units != 200) {
        sink.report_field("vial_units", "value", "must be 100 or 200");
      } else if (product != nullptr && product->vial_units != *units) {
        sink.report_field("vial_units", "business-rule",
                          "does not match the NDC, which is a " +
                              std::to_string(product->vial_units) + " U vial");
      } else {
        p.product.vial_units = *units;
      }
    }
    p.product.vials = read_integer(sink, *obj, "vials", need::optional, 1, limits::max_vials).value_or(1);
    track(before_vials);
    if (auto ml = read_number(sink, *obj, "diluent_ml", need::optional)) {
      if (*ml <= 0) {
        sink.report_field("diluent_ml", "value", "must be > 0");
      } else if (*ml > limits::max_diluent_ml) {
        sink.report_field("diluent_ml", "value", "must be at most " + format_units(limits::max_diluent_ml));
      } else {
        p.product.diluent_ml = ml;
      }
    }
  }

  if (member(root, "product") == nullptr || !member(root, "product")->IsObject()) quantities_read = false;
  const std::size_t before_doses = sink.count();
  auto protocol = read_enum(sink, root, "protocol", need::required, protocol_names);
  p.protocol = protocol.value_or(injection_protocol::custom);
  const bool preempt = protocol == injection_protocol::preempt;
  const bool listed = member(root, "injections") != nullptr;
  p.injections = read_injections(sink, root, "injections",
                                 protocol == injection_protocol::custom ? need::required
                                                                        : need::optional,
                                 false);
  p.follow_the_pain = read_injections(sink, root, "follow_the_pain", need::optional, true);
  track(before_doses);
  if (preempt && !listed) {
    p.injections = preempt_standard_layout();
    p.injections_listed = false;
    int ftp_sites = 0;
    double ftp_units = 0;
    for (const auto& inj : p.follow_the_pain) {
      ftp_sites += inj.sites;
      ftp_units += inj.units;
    }
    if (ftp_sites > preempt_follow_the_pain_max_sites ||
        ftp_units > preempt_follow_the_pain_max_units) {
      sink.report_field("follow_the_pain", "business-rule",
                        "exceeds the PREEMPT follow-the-pain allowance of 8 sites and 40 U (" +
                            std::to_string(ftp_sites) + " sites, " + format_units(ftp_units) +
                            " U listed)");
    }
  }

  const std::size_t before_discarded = sink.count();
  if (auto discarded = read_number(sink, root, "units_discarded", need::required)) {
    if (*discarded < 0) {
      sink.report_field("units_discarded", "value", "must be >= 0");
    } else if (*discarded > limits::max_units_discarded) {
      sink.report_field("units_discarded", "value", "must be at most " + format_units(limits::max_units_discarded));
    } else {
      p.units_discarded = *discarded;
    }
  }
  track(before_discarded);
  if (const Value* arr = read_array(sink, root, "immediate_reactions", need::optional)) {
    auto f = sink.field("immediate_reactions");
    for (rapidjson::SizeType i = 0; i < arr->Size(); ++i) {
      auto at = sink.index(i);
      const Value& item = (*arr)[i];
      if (!item.IsObject()) {
        sink.report("value", "must be an object");
        continue;
      }
      check_known_fields(sink, item, {"reaction", "severity"});
      immediate_reaction r;
      r.reaction = read_string(sink, item, "reaction", need::required, text_kind::free_text).value_or("");
      r.level = read_enum(sink, item, "severity", need::required, severity_names)
                    .value_or(reaction_severity::mild);
      p.immediate_reactions.push_back(std::move(r));
    }
  }
  p.next_due = read_date(sink, root, "next_due", need::optional);

  if (quantities_read) {
    const double capacity = static_cast<double>(p.product.vial_units) * p.product.vials;
    const double used = p.administered_units() + p.units_discarded;
    if (used > capacity + 1e-9) {
      sink.report_field("units_discarded", "business-rule",
                        "administered " + format_units(p.administered_units()) + " U plus discarded " +
                            format_units(p.units_discarded) + " U exceed the " +
                            format_units(capacity) + " U the vial(s) held");
    }
  }
  return p;
}

follow_up read_follow_up(problem_sink& sink, const Value& root) {
  follow_up f;
  f.procedure_record_id =
      read_record_ref(sink, root, "procedure_record_id", need::required).value_or("");
  read_day_counts(sink, root, f.headache_days_per_month, f.migraine_days_per_month);
  f.average_pain = read_integer(sink, root, "average_pain", need::optional, 0, 10);
  read_scores(sink, root, f.score);
  if (const Value* arr = read_array(sink, root, "side_effects", need::optional)) {
    auto in = sink.field("side_effects");
    for (rapidjson::SizeType i = 0; i < arr->Size(); ++i) {
      auto at = sink.index(i);
      const Value& item = (*arr)[i];
      if (!item.IsObject()) {
        sink.report("value", "must be an object");
        continue;
      }
      check_known_fields(sink, item, {"effect", "severity", "onset", "resolved", "description"});
      side_effect e;
      e.effect = read_enum(sink, item, "effect", need::required, side_effect_names)
                     .value_or(side_effect_kind::other);
      e.level = read_enum(sink, item, "severity", need::required, severity_names)
                    .value_or(reaction_severity::mild);
      e.onset = read_date(sink, item, "onset", need::optional);
      e.resolved = read_bool(sink, item, "resolved", need::optional);
      e.description = read_string(sink, item, "description", need::optional, text_kind::free_text);
      f.side_effects.push_back(std::move(e));
    }
  }
  f.plan = read_enum(sink, root, "plan", need::required, plan_names)
               .value_or(follow_up_plan::continue_treatment);
  f.baseline_headache_days_per_month =
      read_integer(sink, root, "baseline_headache_days_per_month", need::optional, 0, 31);
  return f;
}

}  // namespace

std::optional<std::string> normalize_ndc(std::string_view ndc) {
  auto all_digits = [](std::string_view s) {
    return !s.empty() && s.find_first_not_of("0123456789") == std::string_view::npos;
  };
  if (ndc.size() == 11 && all_digits(ndc)) return std::string(ndc);
  auto first = ndc.find('-');
  auto second = first == std::string_view::npos ? first : ndc.find('-', first + 1);
  if (second == std::string_view::npos || ndc.find('-', second + 1) != std::string_view::npos) {
    return std::nullopt;
  }
  std::string_view labeler = ndc.substr(0, first);
  std::string_view product = ndc.substr(first + 1, second - first - 1);
  std::string_view package = ndc.substr(second + 1);
  if (!all_digits(labeler) || !all_digits(product) || !all_digits(package)) return std::nullopt;
  const auto shape = std::make_tuple(labeler.size(), product.size(), package.size());
  std::string out;
  if (shape == std::make_tuple(4u, 4u, 2u)) {
    out = "0" + std::string(labeler) + std::string(product) + std::string(package);
  } else if (shape == std::make_tuple(5u, 3u, 2u)) {
    out = std::string(labeler) + "0" + std::string(product) + std::string(package);
  } else if (shape == std::make_tuple(5u, 4u, 1u)) {
    out = std::string(labeler) + std::string(product) + "0" + std::string(package);
  } else if (shape == std::make_tuple(5u, 4u, 2u)) {  // already padded: "00023-3921-02"
    out = std::string(labeler) + std::string(product) + std::string(package);
  } else {
    return std::nullopt;
  }
  return out;
}

bool is_valid_npi(std::string_view npi) {
  if (npi.size() != 10 || npi.find_first_not_of("0123456789") != std::string_view::npos) {
    return false;
  }
  // Luhn over "80840" + npi: double every second digit counting from the right (check digit
  // excluded). The prefix contributes a constant 24.
  int sum = 24;
  for (int i = 8; i >= 0; --i) {
    int d = npi[static_cast<std::size_t>(i)] - '0';
    if ((8 - i) % 2 == 0) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
  }
  return (10 - sum % 10) % 10 == npi[9] - '0';
}

read_result read_record(std::string_view json, const code_tables& tables, reader_limits limits) {
  read_result result;
  result.record_type = "record";
  if (json.size() > limits.max_record_bytes) {
    result.problems.push_back({fhir::severity::error, "too-long", "",
                               "record is " + std::to_string(json.size()) +
                                   " bytes; the limit is " +
                                   std::to_string(limits.max_record_bytes) + " bytes"});
    return result;
  }
  rapidjson::Document doc;
  // UTF-8 is checked field by field below, so that a problem names its field.
  if (auto error = fhir::detail::parse_json(doc, json, {.validate_encoding = false}); !error.empty()) {
    result.problems.push_back({fhir::severity::error, "structure", "", std::move(error)});
    return result;
  }
  if (!doc.IsObject()) {
    result.problems.push_back(
        {fhir::severity::error, "structure", "record", "a clinic record must be a JSON object"});
    return result;
  }

  // The kind decides the root of every path, so read it first, quietly; problems come below.
  std::optional<std::string_view> kind;
  if (const Value* t = member(doc, "record_type"); t != nullptr && t->IsString()) {
    std::string_view k(t->GetString(), t->GetStringLength());
    if (k == "consultation" || k == "procedure" || k == "follow_up") kind = k;
  }
  if (kind) result.record_type = std::string(*kind);
  if (const Value* id = member(doc, "record_id"); id != nullptr && id->IsString()) {
    std::string_view text(id->GetString(), id->GetStringLength());
    if (is_valid_record_id(text)) result.record_id = std::string(text);
  }

  problem_sink sink(result.record_type, result.problems);
  clinic_record rec;
  if (!kind) {
    if (member(doc, "record_type") == nullptr) {
      sink.report_field("record_type", "required", "is required");
    } else {
      sink.report_field("record_type", "code-invalid",
                        "must be one of: consultation, procedure, follow_up");
    }
  }
  if (read_record_ref(sink, doc, "record_id", need::required)) rec.record_id = result.record_id;
  rec.revision = read_integer(sink, doc, "revision", need::optional, 1, INT32_MAX).value_or(1);
  rec.status = read_enum(sink, doc, "status", need::optional, record_status_names)
                   .value_or(record_status::final);
  if (auto at = read_date_time(sink, doc, "recorded_at", need::required)) rec.recorded_at = *at;
  read_patient(sink, doc, rec.patient);
  read_clinician(sink, doc, rec.clinician);
  read_visit(sink, doc, rec.visit);
  rec.notes = read_string(sink, doc, "notes", need::optional, text_kind::free_text);
  read_object(sink, doc, "extra", need::optional);  // kept by the outbox, ignored by the mapping

  if (kind == "consultation") {
    check_known_fields(sink, doc, envelope_fields,
                       {"headache_days_per_month",
                        "migraine_days_per_month", "months_at_frequency", "headache_hours_per_day",
                        "average_pain", "aura", "acute_medication_days_per_month", "triggers",
                        "prior_preventives", "scores", "diagnosis_code", "decision"});
    rec.body = read_consultation(sink, doc, tables);
  } else if (kind == "procedure") {
    check_known_fields(sink, doc, envelope_fields,
                       {"consultation_record_id", "cycle",
                        "product", "protocol", "injections", "follow_the_pain", "units_discarded",
                        "immediate_reactions", "next_due"});
    rec.body = read_procedure(sink, doc, tables);
  } else if (kind == "follow_up") {
    check_known_fields(sink, doc, envelope_fields,
                       {"procedure_record_id",
                        "headache_days_per_month", "migraine_days_per_month", "average_pain",
                        "scores", "side_effects", "plan", "baseline_headache_days_per_month"});
    rec.body = read_follow_up(sink, doc);
  }

  // Invalid UTF-8 the fields did not hold (a key, `extra`): the record as a whole is refused, as
  // the parser would have refused it, but after every field had its say.
  if (result.problems.empty()) {
    if (const std::string why = string_problem(json, text_kind::free_text); !why.empty()) {
      result.problems.push_back({fhir::severity::error, "structure", "", "the record " + why});
    }
  }
  if (result.problems.empty()) result.record = std::move(rec);
  return result;
}

}  // namespace mappings
