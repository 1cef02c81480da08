// Reading what the EHR says it supports, and the write strategy chosen from it.
#include "connector/sync/ehr_capabilities.h"

#include <algorithm>

#include <gtest/gtest.h>

namespace connector {
namespace {

// A rest.resource entry: interactions given as codes, with the conditional flags.
std::string resource(const std::string& type, const std::vector<std::string>& interactions, bool conditional,
                     const std::string& extra = "") {
  std::string s = R"({"type":")" + type + R"(","interaction":[)";
  for (std::size_t i = 0; i < interactions.size(); ++i) {
    s += (i ? "," : "") + std::string(R"({"code":")") + interactions[i] + "\"}";
  }
  s += "]";
  if (conditional) s += R"(,"conditionalCreate":true,"conditionalUpdate":true)";
  return s + extra + "}";
}

std::string statement(const std::string& system_interactions, const std::vector<std::string>& resources) {
  std::string s = R"({"resourceType":"CapabilityStatement","software":{"name":"Test","version":"1.2"},)"
                  R"("rest":[{"mode":"server","interaction":[)" + system_interactions + R"(],"resource":[)";
  for (std::size_t i = 0; i < resources.size(); ++i) s += (i ? "," : "") + resources[i];
  return s + "]}]}";
}

// Every type the connector writes, each allowing `interactions`.
std::vector<std::string> all_types(const std::vector<std::string>& interactions, bool conditional) {
  std::vector<std::string> out;
  for (const auto& t : written_types()) out.push_back(resource(std::string(t.type), interactions, conditional));
  return out;
}

ehr_capabilities read(const std::string& json) {
  std::string error;
  auto c = read_capabilities(json, error);
  EXPECT_TRUE(c.has_value()) << error;
  return c.value_or(ehr_capabilities{});
}

const type_route& route(const write_strategy& s, std::string_view type) {
  const auto it = std::find_if(s.types.begin(), s.types.end(), [&](const type_route& r) { return r.type == type; });
  EXPECT_NE(it, s.types.end()) << type;
  return *it;
}

const std::string transaction_and_batch = R"({"code":"transaction"},{"code":"batch"})";

TEST(ehr_capabilities, reads_system_and_type_interactions_flags_versioning_and_identifier_search) {
  const auto c = read(statement(transaction_and_batch,
                                {resource("Observation", {"create", "update", "read", "search-type"}, true,
                                          R"(,"versioning":"versioned-update","searchParam":[{"name":"identifier","type":"token"}])"),
                                 resource("Patient", {"read", "search-type"}, false)}));
  EXPECT_TRUE(c.transaction);
  EXPECT_TRUE(c.batch);
  EXPECT_EQ(c.software, "Test 1.2");
  const auto* obs = c.type("Observation");
  ASSERT_NE(obs, nullptr);
  EXPECT_TRUE(obs->interactions_stated && obs->create && obs->update && obs->read && obs->search);
  EXPECT_TRUE(obs->conditional_create && obs->conditional_update && obs->identifier_search);
  EXPECT_EQ(obs->versioning, "versioned-update");
  const auto* patient = c.type("Patient");
  ASSERT_NE(patient, nullptr);
  EXPECT_FALSE(patient->create || patient->update || patient->conditional_create || patient->identifier_search);
  EXPECT_TRUE(patient->read && patient->search);
  EXPECT_EQ(c.type("Encounter"), nullptr);
}

TEST(ehr_capabilities, what_is_not_a_capability_statement_is_refused_by_name) {
  std::string error;
  EXPECT_FALSE(read_capabilities("<html>", error));
  EXPECT_NE(error.find("not JSON"), std::string::npos) << error;
  EXPECT_FALSE(read_capabilities(R"({"resourceType":"OperationOutcome"})", error));
  EXPECT_EQ(error, "the EHR's /metadata is not a CapabilityStatement");
  EXPECT_FALSE(read_capabilities(R"({"resourceType":"CapabilityStatement"})", error));
  EXPECT_EQ(error, "the EHR's CapabilityStatement has no rest section");
}

TEST(write_strategy, a_full_server_gets_one_transaction_per_record_with_every_type) {
  const auto s = choose_strategy(read(statement(transaction_and_batch, all_types({"create", "update"}, true))),
                                 write_mode::automatic);
  EXPECT_EQ(s.mode, write_mode::transaction);
  EXPECT_TRUE(s.deliverable) << s.not_deliverable_because;
  EXPECT_EQ(s.types.size(), written_types().size());
  for (const auto& r : s.types) EXPECT_TRUE(r.sent) << r.type;
  EXPECT_EQ(route(s, "Procedure").how, "in the transaction: conditional create, conditional update for amendments");
  EXPECT_EQ(route(s, "Patient").how, "in the transaction: conditional create");
  EXPECT_EQ(route(s, "Patient").why, "");
}

TEST(write_strategy, types_listed_without_interactions_are_assumed_and_say_so) {
  // The bundled sandbox and several full servers publish only the type names.
  std::vector<std::string> names;
  for (const auto& t : written_types()) names.push_back(R"({"type":")" + std::string(t.type) + "\"}");
  const auto s = choose_strategy(read(statement(R"({"code":"transaction"})", names)), write_mode::automatic);
  EXPECT_EQ(s.mode, write_mode::transaction);
  EXPECT_TRUE(s.deliverable);
  EXPECT_EQ(route(s, "Encounter").why, "interactions not stated by the EHR: assumed");
}

TEST(write_strategy, an_epic_like_ehr_gets_single_requests_and_what_it_will_not_take_is_named) {
  // No transaction or batch, no conditional writes, Patient and Encounter read-only.
  auto types = all_types({"create", "update", "read", "search-type"}, false);
  types.push_back(resource("Patient", {"read", "search-type"}, false));
  std::vector<std::string> resources;
  for (const auto& t : written_types()) {
    if (t.type == "Patient" || t.type == "Encounter" || t.type == "MedicationAdministration") {
      resources.push_back(resource(std::string(t.type), {"read", "search-type"}, false));
    } else {
      resources.push_back(resource(std::string(t.type), {"create", "update", "read"}, false));
    }
  }
  const auto s = choose_strategy(read(statement("", resources)), write_mode::automatic);
  EXPECT_EQ(s.mode, write_mode::single);
  EXPECT_EQ(s.why, "the EHR advertises neither transaction nor batch");
  // The EHR's own patients: found by identifier (search-type, no searchParam list: assumed), never created.
  EXPECT_TRUE(route(s, "Patient").sent);
  EXPECT_EQ(route(s, "Patient").create, create_by::match_only);
  EXPECT_EQ(route(s, "Patient").how, "one request: found by identifier, never created");
  EXPECT_EQ(route(s, "Patient").why, "the EHR does not allow create of Patient");
  EXPECT_FALSE(route(s, "MedicationAdministration").sent);
  EXPECT_EQ(route(s, "MedicationAdministration").why, "the EHR does not allow create of MedicationAdministration");
  // No search and no conditional create: only the connector's ledger knows what it created.
  EXPECT_TRUE(route(s, "Observation").sent);
  EXPECT_EQ(route(s, "Observation").create, create_by::ledger);
  EXPECT_EQ(route(s, "Observation").update, update_by::by_id);
  EXPECT_EQ(route(s, "Observation").how,
            "one request: created once, the EHR's id kept in the ledger; amendments update the id the ledger names");
  EXPECT_TRUE(s.deliverable);
}

TEST(write_strategy, single_mode_cannot_deliver_when_the_patient_can_be_neither_created_nor_found) {
  std::vector<std::string> resources;
  for (const auto& t : written_types()) {
    resources.push_back(t.type == "Patient" ? resource("Patient", {"read"}, false)
                                            : resource(std::string(t.type), {"create", "update", "read"}, false));
  }
  const auto s = choose_strategy(read(statement("", resources)), write_mode::automatic);
  EXPECT_FALSE(route(s, "Patient").sent);
  EXPECT_EQ(route(s, "Patient").why, "the EHR neither creates Patient nor finds it by identifier");
  EXPECT_FALSE(s.deliverable);
  EXPECT_EQ(s.not_deliverable_because, route(s, "Patient").why);
}

TEST(write_strategy, patient_match_is_never_a_create_even_where_the_ehr_allows_one) {
  const auto s = choose_strategy(read(statement("", all_types({"create", "update", "search-type"}, false))),
                                 write_mode::single, party_rules{.match_patient = true, .match_practitioner = false});
  EXPECT_EQ(route(s, "Patient").create, create_by::match_only);
  EXPECT_EQ(route(s, "Patient").why, "");
  EXPECT_EQ(route(s, "Practitioner").create, create_by::search_first);
  EXPECT_EQ(route(s, "Practitioner").how, "one request: searched by identifier, created when absent");
}

TEST(write_strategy, a_type_created_but_never_updatable_is_not_sent_when_amendments_need_it) {
  auto types = all_types({"create", "update"}, true);
  types.erase(std::remove_if(types.begin(), types.end(),
                             [](const std::string& r) { return r.find(R"("Procedure")") != std::string::npos; }),
              types.end());
  types.push_back(resource("Procedure", {"create"}, true));
  const auto s = choose_strategy(read(statement(transaction_and_batch, types)), write_mode::automatic);
  EXPECT_FALSE(route(s, "Procedure").sent);
  EXPECT_EQ(route(s, "Procedure").why, "the EHR does not allow update of Procedure");
  EXPECT_FALSE(s.deliverable);
  EXPECT_EQ(s.not_deliverable_because,
            "the EHR does not allow update of Procedure, and leaving a type out is not implemented yet");
}

TEST(write_strategy, batch_when_transactions_are_not_advertised_and_single_without_conditional_create) {
  const auto batch = choose_strategy(read(statement(R"({"code":"batch"})", all_types({"create", "update"}, true))),
                                     write_mode::automatic);
  EXPECT_EQ(batch.mode, write_mode::batch);
  EXPECT_EQ(route(batch, "Condition").how, "in a batch: conditional create; conditional update for amendments");

  // A transaction is worth nothing where If-None-Exist is not honoured: a resend would duplicate.
  auto types = all_types({"create", "update"}, true);
  types.erase(std::remove_if(types.begin(), types.end(),
                             [](const std::string& r) { return r.find(R"("Observation")") != std::string::npos; }),
              types.end());
  types.push_back(resource("Observation", {"create", "update"}, false));
  const auto s = choose_strategy(read(statement(transaction_and_batch, types)), write_mode::automatic);
  EXPECT_EQ(s.mode, write_mode::single);
  EXPECT_EQ(s.why, "the EHR does not advertise Observation conditional create");
}

TEST(write_strategy, a_configured_mode_is_kept_and_what_the_ehr_lacks_is_said) {
  const auto s = choose_strategy(read(statement(R"({"code":"batch"})", all_types({"create", "update"}, true))),
                                 write_mode::transaction);
  EXPECT_EQ(s.configured, write_mode::transaction);
  EXPECT_EQ(s.mode, write_mode::transaction);
  EXPECT_EQ(s.why, "ehr.write_mode is transaction; the EHR does not advertise transaction");
}

TEST(write_mode, names_are_the_configuration_values) {
  for (const auto* name : {"auto", "transaction", "batch", "single"}) {
    const auto m = write_mode_named(name);
    ASSERT_TRUE(m.has_value()) << name;
    EXPECT_EQ(name_of(*m), name);
  }
  EXPECT_FALSE(write_mode_named("Transaction"));
  EXPECT_FALSE(write_mode_named(""));
}

}  // namespace
}  // namespace connector
