// Every search value the connector writes into a conditional URL (ifNoneExist, a conditional PUT's
// URL, a conditional reference) is built here, and only here. A value is first escaped as FHIR
// search requires (a backslash before , | $ and \, which otherwise mean "or", "system|code",
// composite parts and escape), then percent-encoded (RFC 3986) for everything outside the
// unreserved set, so that "+" is not read as a space, "&" and "#" do not end the parameter, and
// spaces and non-ASCII letters travel intact. An MRN such as "MRN-100,234" then matches only
// itself, never "MRN-100" or "234".
#pragma once

#include <string>
#include <string_view>

namespace fhir {

// "MRN\,1" for "MRN,1": FHIR search escaping of one value.
std::string escape_search_value(std::string_view value);

// RFC 3986 percent-encoding of every byte outside A-Z a-z 0-9 - . _ ~ (UTF-8 bytes one by one).
std::string percent_encode(std::string_view text);

// name=<system>|<code> for a token parameter (identifier, _tag), both parts escaped and encoded;
// the "|" between them stays as it is, as FHIR writes it.
std::string token_parameter(std::string_view name, std::string_view system, std::string_view code);
// percent_encode(escape_search_value(value)), appended to `out`.
void append_search_value(std::string& out, std::string_view value);
// token_parameter, appended to `out`.
void append_token_parameter(std::string& out, std::string_view name, std::string_view system,
                            std::string_view code);

}  // namespace fhir
