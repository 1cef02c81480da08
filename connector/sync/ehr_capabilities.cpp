// Reading a CapabilityStatement and choosing the write strategy from it.
#include "connector/sync/ehr_capabilities.h"

#include <algorithm>

#include "connector/net/ehr_client.h"
#include "fhir/json_value.h"

namespace connector {
namespace {

std::string_view string_member(const fhir::json_value& v, std::string_view key) {
  const auto* m = v.find(key);
  return m != nullptr && m->is_string() ? std::string_view(m->text) : std::string_view();
}

bool bool_member(const fhir::json_value& v, std::string_view key) {
  const auto* m = v.find(key);
  return m != nullptr && m->is_bool() && m->boolean;
}

// The codes of an `interaction` array: [{"code": "create"}, ...].
template <typename Each>
void for_each_code(const fhir::json_value& v, Each each) {
  const auto* list = v.find("interaction");
  if (list == nullptr || !list->is_array()) return;
  for (const auto& i : list->items) {
    if (i.is_object()) each(string_member(i, "code"));
  }
}

type_capabilities read_type(const fhir::json_value& r) {
  type_capabilities t;
  t.interactions_stated = r.find("interaction") != nullptr;
  for_each_code(r, [&](std::string_view code) {
    if (code == "create") t.create = true;
    if (code == "update") t.update = true;
    if (code == "read") t.read = true;
    if (code == "search-type") t.search = true;
  });
  t.conditional_create = bool_member(r, "conditionalCreate");
  t.conditional_update = bool_member(r, "conditionalUpdate");
  t.versioning = std::string(string_member(r, "versioning"));
  if (const auto* params = r.find("searchParam"); params != nullptr && params->is_array()) {
    auto has = [&](std::string_view name) {
      return std::any_of(params->items.begin(), params->items.end(), [&](const fhir::json_value& p) {
        return p.is_object() && string_member(p, "name") == name;
      });
    };
    t.search_params_stated = true;
    t.identifier_search = has("identifier");
    t.tag_search = has("_tag");
  }
  return t;
}

}  // namespace

const type_capabilities* ehr_capabilities::type(std::string_view name) const {
  const auto it = types.find(name);
  return it == types.end() ? nullptr : &it->second;
}

std::optional<ehr_capabilities> read_capabilities(std::string_view json, std::string& error) {
  fhir::json_value root;
  if (auto e = fhir::parse_json_value(json, root, false); !e.empty()) {
    error = "the EHR's /metadata is not JSON: " + e;
    return std::nullopt;
  }
  if (!root.is_object() || string_member(root, "resourceType") != "CapabilityStatement") {
    error = "the EHR's /metadata is not a CapabilityStatement";
    return std::nullopt;
  }
  ehr_capabilities c;
  if (const auto* software = root.find("software"); software != nullptr && software->is_object()) {
    c.software = std::string(string_member(*software, "name"));
    if (const auto version = string_member(*software, "version"); !version.empty()) {
      c.software += (c.software.empty() ? "" : " ") + std::string(version);
    }
  }
  const auto* rest = root.find("rest");
  if (rest == nullptr || !rest->is_array()) {
    error = "the EHR's CapabilityStatement has no rest section";
    return std::nullopt;
  }
  for (const auto& r : rest->items) {
    if (!r.is_object() || string_member(r, "mode") != "server") continue;
    for_each_code(r, [&](std::string_view code) {
      if (code == "transaction") c.transaction = true;
      if (code == "batch") c.batch = true;
    });
    if (const auto* resources = r.find("resource"); resources != nullptr && resources->is_array()) {
      for (const auto& res : resources->items) {
        if (!res.is_object()) continue;
        const auto type = string_member(res, "type");
        if (type.empty()) continue;
        c.lists_types = true;
        c.types[std::string(type)] = read_type(res);
      }
    }
  }
  return c;
}

std::optional<ehr_capabilities> capabilities_of(const ehr_answer& answer, std::string& error) {
  if (answer.outcome.what != attempt_outcome::kind::response) {
    error = "/metadata: " + (answer.error.empty() ? std::string("no answer") : answer.error);
    return std::nullopt;
  }
  if (answer.outcome.http_status != 200) {
    error = "/metadata: HTTP " + std::to_string(answer.outcome.http_status);
    return std::nullopt;
  }
  return read_capabilities(answer.body, error);
}

std::optional<write_mode> write_mode_named(std::string_view name) {
  if (name == "auto") return write_mode::automatic;
  if (name == "transaction") return write_mode::transaction;
  if (name == "batch") return write_mode::batch;
  if (name == "single") return write_mode::single;
  return std::nullopt;
}

std::string_view name_of(write_mode mode) {
  switch (mode) {
    case write_mode::automatic: return "auto";
    case write_mode::transaction: return "transaction";
    case write_mode::batch: return "batch";
    case write_mode::single: return "single";
  }
  return "auto";
}

const std::vector<written_type>& written_types() {
  // The mapper's entries (mappings/*_mapper.cpp): shared context first (created once, never
  // changed: record_context::begin_shared), then each record's own resources, created by its first
  // revision and updated by amendments and retractions (record_context::begin).
  static const std::vector<written_type> types = {
      {"Organization", false},     {"Practitioner", false},     {"Patient", false},
      {"Device", false},           {"Encounter", true},         {"Condition", true},
      {"ServiceRequest", true},    {"Medication", true},        {"Procedure", true},
      {"MedicationAdministration", true}, {"MedicationStatement", true}, {"Observation", true},
      {"AdverseEvent", true},      {"ChargeItem", true},        {"DetectedIssue", true},
      // Only where the EHR will not take some of the above: the note that carries them (folded_note.h).
      {"DocumentReference", true}, {"Provenance", false},
  };
  return types;
}

namespace {

bool is_tag_keyed(std::string_view type) { return type == "Provenance" || type == "AdverseEvent"; }

// Whether the EHR takes `t` the way the connector writes it, and if not, why not.
type_route route_for(const ehr_capabilities& ehr, const written_type& t, write_mode mode, party_rules parties) {
  type_route route;
  route.type = std::string(t.type);
  const auto* caps = ehr.type(t.type);
  if (caps == nullptr && ehr.lists_types) {
    route.sent = false;
    route.how = "not sent";
    route.why = "the EHR's CapabilityStatement does not list " + route.type;
    return route;
  }
  const bool stated = caps != nullptr && caps->interactions_stated;
  // Not stated: assumed to allow what the connector needs (many full servers list only types).
  const bool create = !stated || caps->create;
  const bool update = !stated || caps->update;
  const bool search = !stated || caps->search;
  const bool searchable_key = caps == nullptr || !caps->search_params_stated ||
                              (is_tag_keyed(t.type) ? caps->tag_search : caps->identifier_search);
  route.findable = search && searchable_key;
  route.if_match = caps != nullptr && caps->versioning == "versioned-update";
  const bool cond_create = !stated || caps->conditional_create;
  const bool cond_update = !stated || caps->conditional_update;
  const bool shared = !t.upserted && t.type != "Provenance";  // Organization, Practitioner, Patient, Device
  route.shared = shared;
  const bool match = (t.type == "Patient" && parties.match_patient) ||
                     (t.type == "Practitioner" && parties.match_practitioner);

  if (mode == write_mode::transaction) {
    if (stated && (!create || (t.upserted && !update))) {
      route.sent = false;
      route.how = "not sent";
      route.why = std::string("the EHR does not allow ") + (!create ? "create" : "update") + " of " + route.type;
      return route;
    }
    route.how = std::string("in the transaction") + (t.upserted ? ": conditional create, conditional update for amendments"
                                                                : ": conditional create");
    if (match) route.how += "; matched by identifier first, never created";
    if (!stated) route.why = "interactions not stated by the EHR: assumed";
    return route;
  }

  // One request per resource (single), or batches of them: each way needs what it says.
  std::string how;
  if (match || (shared && !create)) {
    if (!route.findable) {
      route.sent = false;
      route.how = "not sent";
      route.why = "the EHR neither creates " + route.type + " nor finds it by identifier";
      return route;
    }
    route.create = create_by::match_only;
    how = "found by identifier, never created";
    if (!match) route.why = "the EHR does not allow create of " + route.type;
  } else if (!create) {
    route.sent = false;
    route.how = "not sent";
    route.why = "the EHR does not allow create of " + route.type;
    return route;
  } else if (cond_create) {
    route.create = create_by::conditional;
    how = "conditional create";
  } else if (route.findable) {
    route.create = create_by::search_first;
    how = shared ? "searched by identifier, created when absent"
                 : "created once (searched by identifier first only when a resend may find it there)";
  } else {
    route.create = create_by::ledger;
    how = "created once, the EHR's id kept in the ledger";
  }
  if (t.upserted) {
    if (!update) {
      route.update = update_by::none;
      how += "; amendments not sent (the EHR does not allow update)";
    } else if (cond_update) {
      route.update = update_by::conditional;
      how += "; conditional update for amendments";
    } else {
      route.update = update_by::by_id;
      how += std::string("; amendments update the id the ledger names") + (route.if_match ? " (If-Match)" : "");
    }
  }
  route.how = std::string(mode == write_mode::batch ? "in a batch: " : "one request: ") + how;
  if (!stated && route.why.empty()) route.why = "interactions not stated by the EHR: assumed";
  return route;
}

// What a transaction or batch of today's Bundles needs of every type it holds: conditional create,
// and conditional update for what amendments change, keyed by identifier.
bool conditional_writes_for_all(const ehr_capabilities& ehr, std::string& missing) {
  for (const auto& t : written_types()) {
    const auto* caps = ehr.type(t.type);
    if (caps == nullptr || !caps->interactions_stated) continue;  // not listed: not sent; not stated: assumed
    if (!caps->conditional_create || (t.upserted && !caps->conditional_update)) {
      missing = std::string(t.type) + (!caps->conditional_create ? " conditional create" : " conditional update");
      return false;
    }
  }
  return true;
}

}  // namespace

const type_route* write_strategy::route(std::string_view type) const {
  const auto it = std::find_if(types.begin(), types.end(), [&](const type_route& r) { return r.type == type; });
  return it == types.end() ? nullptr : &*it;
}

write_strategy choose_strategy(const ehr_capabilities& ehr, write_mode configured, party_rules parties) {
  write_strategy s;
  s.configured = configured;
  std::string missing;
  const bool conditional = conditional_writes_for_all(ehr, missing);
  if (configured != write_mode::automatic) {
    s.mode = configured;
    s.why = "ehr.write_mode is " + std::string(name_of(configured));
    if (configured == write_mode::transaction && !ehr.transaction) {
      s.why += "; the EHR does not advertise transaction";
    }
  } else if (ehr.transaction && conditional) {
    s.mode = write_mode::transaction;
    s.why = "the EHR advertises transaction and conditional writes";
  } else if (ehr.batch && conditional) {
    s.mode = write_mode::batch;
    s.why = "the EHR advertises batch, not transaction";
  } else {
    s.mode = write_mode::single;
    s.why = !ehr.transaction && !ehr.batch ? "the EHR advertises neither transaction nor batch"
                                           : "the EHR does not advertise " + missing;
  }
  for (const auto& t : written_types()) s.types.push_back(route_for(ehr, t, s.mode, parties));

  // A transaction carries every type the mapper writes; outside one, what the EHR does not take
  // is left out, named per record in the sync log.
  if (s.mode != write_mode::transaction) {
    const auto* patient = s.route("Patient");
    if (patient != nullptr && !patient->sent) {
      s.deliverable = false;
      s.not_deliverable_because = patient->why;
    }
  } else if (const auto left_out = std::find_if(s.types.begin(), s.types.end(), [](const type_route& r) { return !r.sent; });
             left_out != s.types.end()) {
    s.deliverable = false;
    s.not_deliverable_because = left_out->why + ", and leaving a type out is not implemented yet";
  }
  return s;
}

}  // namespace connector
