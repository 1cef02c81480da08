// Text from outside (an EHR's answer, a rejected record's id) as UTF-8 a JSON writer or a database
// text column may take.
#pragma once

#include <string>
#include <string_view>

namespace fhir {

// Every byte that does not start a well-formed sequence, and every UTF-16 surrogate code point
// (RapidJSON 1.1 decodes a lone "\uDC00" escape into one), becomes U+FFFD. Found by
// tests/fuzz/transaction_response_fuzz.
std::string as_utf8(std::string_view text);

}  // namespace fhir
