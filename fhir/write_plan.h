// A record's write plan: the resources the mapper made for it, each with its business key, how
// it is written (created once if absent, or upserted) and the references between them.
//
// The mapper writes a plan in its transaction encoding (transaction_writer): a transaction Bundle
// is a complete, standard description of one (fullUrl, resource, request), and it is what the
// outbox's full servers take as it is. read_plan gives the plan back for the other encodings,
// which connector/sync/ chooses from the EHR's capabilities: batch Bundles, or one request per
// resource with the references rewritten to the ids the EHR assigned.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "fhir/transaction_writer.h"

namespace fhir {

struct planned_write {
  std::string type;        // "Observation"
  std::string key_system;  // the business identifier (a meta.tag for is_matched_by_tag types)
  std::string key_value;
  write_mode mode = write_mode::create_if_absent;
  std::string full_url;  // urn:uuid: how other writes of the plan refer to it
  std::string resource;  // the resource's JSON
  // Every reference the resource holds, in document order: urn:uuid fullUrls of the plan's own
  // writes, and conditional references ("Procedure?identifier=s|v") to other records' resources.
  std::vector<std::string> references;
};

struct write_plan {
  std::string bundle_system, bundle_value;  // the Bundle's identifier: the record and revision
  std::vector<planned_write> writes;
  // Types not written as resources whose content a note in the plan carries instead.
  std::vector<std::string> folded;
};

// Reads a transaction Bundle written by transaction_writer. nullopt and `error` when it is not one.
std::optional<write_plan> read_plan(std::string_view transaction_bundle, std::string& error);

// Puts each write after the writes of the plan it refers to, keeping the order otherwise (the
// mapper writes in dependency order already). Where references go round in a circle (an
// Encounter's reasonReference to the Condition whose encounter it is), the first write of the
// circle goes first, and its reference to the later one cannot be resolved when it is sent.
void order_by_dependency(write_plan& plan);

// A conditional reference read back: {type, system, value}. nullopt for anything else.
struct conditional_target {
  std::string type, system, value;
};
std::optional<conditional_target> read_conditional_reference(std::string_view reference);

// The resource with each reference replaced by what `resolve` returns for it; where it returns
// nullopt the element holding the reference goes, and so does every object or array that leaves
// empty (a performer whose actor went goes too). Returns the rewritten JSON.
using reference_resolver = std::function<std::optional<std::string>(std::string_view reference)>;
std::string rewrite_references(std::string_view resource_json, const reference_resolver& resolve);

// The same resource with `id` set (a PUT to Type/id must carry it), JSON in and out.
std::string with_id(std::string_view resource_json, std::string_view id);

}  // namespace fhir
