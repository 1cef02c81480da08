// FHIR R4 datatypes the mappers write again and again: Coding, CodeableConcept, Quantity,
// Reference, Period. Plain data plus writer functions; nothing here knows about clinics.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "fhir/json_writer.h"

namespace fhir {

struct coding {
  std::string system;
  std::string code;
  std::string display;
};

// A concept as the code tables describe it: zero or more codings plus the text people read.
struct codeable_concept {
  std::vector<coding> codings;
  std::string text;
};

inline constexpr std::string_view ucum = "http://unitsofmeasure.org";

void write_coding(json_writer& out, const coding& c);
// The compact JSON of a CodeableConcept, for writing the same concept many times with json_writer::raw.
std::string render_codeable_concept(const codeable_concept& c);
// {"coding":[...],"text":...}
void write_codeable_concept(json_writer& out, const codeable_concept& c);
// {"value":v,"unit":unit,"system":UCUM,"code":ucum_code}
void write_ucum_quantity(json_writer& out, double value, std::string_view unit,
                         std::string_view ucum_code);
// {"reference":ref} with an optional display
void write_reference(json_writer& out, std::string_view reference, std::string_view display = {});
// key: [ {"reference": r} ... ]
void write_reference_array(json_writer& out, std::string_view key,
                           const std::vector<std::string>& references);
// {"start":..,"end":..}; end omitted when empty
void write_period(json_writer& out, std::string_view start, std::string_view end);

}  // namespace fhir
