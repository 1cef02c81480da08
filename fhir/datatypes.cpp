// Writers for the common FHIR datatypes.
#include "fhir/datatypes.h"

namespace fhir {

void write_coding(json_writer& out, const coding& c) {
  out.begin_object();
  out.member("system", c.system);
  out.member("code", c.code);
  if (!c.display.empty()) out.member("display", c.display);
  out.end_object();
}

void write_codeable_concept(json_writer& out, const codeable_concept& c) {
  out.begin_object();
  if (!c.codings.empty()) {
    out.key("coding");
    out.begin_array();
    for (const auto& one : c.codings) write_coding(out, one);
    out.end_array();
  }
  if (!c.text.empty()) out.member("text", c.text);
  out.end_object();
}

std::string render_codeable_concept(const codeable_concept& c) {
  json_writer out;
  write_codeable_concept(out, c);
  return std::string(out.view());
}

void write_ucum_quantity(json_writer& out, double value, std::string_view unit,
                         std::string_view ucum_code) {
  out.begin_object();
  out.member_number("value", value);
  out.member("unit", unit);
  out.member("system", ucum);
  out.member("code", ucum_code);
  out.end_object();
}

void write_reference(json_writer& out, std::string_view reference, std::string_view display) {
  out.begin_object();
  out.member("reference", reference);
  if (!display.empty()) out.member("display", display);
  out.end_object();
}

void write_reference_array(json_writer& out, std::string_view key,
                           const std::vector<std::string>& references) {
  out.key(key);
  out.begin_array();
  for (const auto& r : references) write_reference(out, r);
  out.end_array();
}

void write_period(json_writer& out, std::string_view start, std::string_view end) {
  out.begin_object();
  out.member("start", start);
  if (!end.empty()) out.member("end", end);
  out.end_object();
}

}  // namespace fhir
