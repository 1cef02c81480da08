// Transaction-response parsing (RapidJSON stays in this file).
#include "fhir/transaction_response.h"

#include "fhir/json_parse.h"

namespace fhir {

std::optional<std::vector<entry_response>> read_transaction_response(std::string_view json) {
  rapidjson::Document doc;
  if (!detail::parse_json(doc, json).empty() || !doc.IsObject()) return std::nullopt;
  const auto type = doc.FindMember("type");
  if (type == doc.MemberEnd() || !type->value.IsString() ||
      std::string_view(type->value.GetString()) != "transaction-response") {
    return std::nullopt;
  }
  std::vector<entry_response> responses;
  const auto entries = doc.FindMember("entry");
  if (entries == doc.MemberEnd() || !entries->value.IsArray()) return responses;
  for (const auto& e : entries->value.GetArray()) {
    entry_response r;
    if (e.IsObject() && e.HasMember("response") && e["response"].IsObject()) {
      const auto& response = e["response"];
      if (response.HasMember("status") && response["status"].IsString()) r.status = response["status"].GetString();
      if (response.HasMember("location") && response["location"].IsString()) r.location = response["location"].GetString();
    }
    responses.push_back(std::move(r));
  }
  return responses;
}

}  // namespace fhir
