// Write mode single against an in-memory REST EHR: the example consultation's plan, one request per
// resource, references rewritten to the EHR's ids; then every request failing in turn (refused, or
// committed with its answer lost) and the record sent again with what the ledger kept: the EHR ends
// with each resource once, as after a clean run. Plus the EHR's own patients: none, one, several.
#include "connector/sync/plan_delivery.h"

#include <filesystem>
#include <map>
#include <set>

#include <boost/asio/post.hpp>
#include <gtest/gtest.h>

#include "connector/auth/client_assertion.h"
#include "connector/outbox/sqlite_outbox.h"
#include "fhir/json_value.h"
#include "support/test_support.h"

namespace {

namespace fs = std::filesystem;
namespace asio = boost::asio;
using namespace connector;

struct stored {
  std::string type, id;
  int version = 1;
  std::string system, value;  // its first identifier (or tag)
  std::string body;
};

// A small REST server: POST Type, GET Type?identifier=|_tag=, PUT Type/id (If-Match). Request `n`
// (1-based) can be refused with 503, or committed with its answer lost.
class rest_ehr final : public ehr_channel {
 public:
  explicit rest_ehr(asio::io_context& io) : io_(io) {}
  int refuse_at = 0, lose_answer_at = 0;
  std::vector<stored> resources;
  std::vector<std::string> log;  // "POST Observation", "GET Patient?..."

  bool send(ehr_request r, std::function<void(ehr_answer)> done) override {
    const int n = ++requests_;
    asio::post(io_, [this, n, r = std::move(r), done = std::move(done)] { done(answer(n, r)); });
    return true;
  }
  int free_connections() const override { return 1; }

  std::size_t count(std::string_view type) const {
    return static_cast<std::size_t>(std::count_if(resources.begin(), resources.end(), [&](const stored& s) { return s.type == type; }));
  }
  // Each business key at most once.
  bool no_duplicates() const {
    std::set<std::tuple<std::string, std::string, std::string>> keys;
    for (const auto& s : resources) {
      if (!keys.insert({s.type, s.system, s.value}).second) return false;
    }
    return true;
  }
  int requests() const { return requests_; }

 private:
  static std::string first_key(const fhir::json_value& v, bool tag, std::string& value) {
    const fhir::json_value* list = nullptr;
    if (tag) {
      const auto* meta = v.find("meta");
      list = meta != nullptr ? meta->find("tag") : nullptr;
    } else {
      list = v.find("identifier");
    }
    if (list == nullptr) return {};
    const fhir::json_value& first = list->is_array() ? list->items.at(0) : *list;
    value = first.find(tag ? "code" : "value")->text;
    return first.find("system")->text;
  }

  ehr_answer answer(int n, const ehr_request& r) {
    ehr_answer a;
    a.outcome.what = attempt_outcome::kind::response;
    log.push_back(r.method + " " + r.path);
    if (n == refuse_at) {
      a.outcome.http_status = 503;
      return a;
    }
    const std::string path = r.path.substr(1);
    if (r.method == "GET") {
      const auto target = fhir::read_conditional_reference(path);
      std::string body = R"({"resourceType":"Bundle","type":"searchset","entry":[)";
      bool first = true;
      for (const auto& s : resources) {
        if (!target || s.type != target->type || s.system != target->system || s.value != target->value) continue;
        body += std::string(first ? "" : ",") + R"({"search":{"mode":"match"},"resource":{"resourceType":")" + s.type +
                R"(","id":")" + s.id + R"(","meta":{"versionId":")" + std::to_string(s.version) + R"("}}})";
        first = false;
      }
      a.body = body + "]}";
      a.outcome.http_status = 200;
    } else {
      fhir::json_value v;
      EXPECT_TRUE(fhir::parse_json_value(r.body, v, false).empty());
      const std::string type = v.find("resourceType")->text;
      // Every reference is literal and to something the EHR holds: referential integrity.
      check_references(v);
      if (r.method == "POST") {
        stored s;
        s.type = type;
        s.id = type + "-" + std::to_string(resources.size() + 1);
        s.system = first_key(v, fhir::is_matched_by_tag(type), s.value);
        s.body = r.body;
        resources.push_back(s);
        a.outcome.http_status = 201;
        a.location = type + "/" + s.id + "/_history/1";
      } else {  // PUT Type/id
        const std::string id = path.substr(path.find('/') + 1);
        auto it = std::find_if(resources.begin(), resources.end(), [&](const stored& s) { return s.type == type && s.id == id; });
        if (it == resources.end()) {
          a.outcome.http_status = 404;
          return a;
        }
        for (const auto& [name, value] : r.headers) {
          if (name == "If-Match" && value != "W/\"" + std::to_string(it->version) + "\"") {
            a.outcome.http_status = 412;
            return a;
          }
        }
        ++it->version;
        it->body = r.body;
        a.outcome.http_status = 200;
        a.location = type + "/" + id + "/_history/" + std::to_string(it->version);
      }
    }
    if (n == lose_answer_at) {  // committed; the connection dies before the answer
      ehr_answer lost;
      lost.outcome.what = attempt_outcome::kind::connection_failed;
      lost.outcome.request_sent = true;
      lost.error = "receive: end of stream";
      return lost;
    }
    return a;
  }

  void check_references(const fhir::json_value& v) {
    if (v.is_object()) {
      for (const auto& [k, m] : v.members) {
        if (k == "reference" && m.is_string()) {
          const auto slash = m.text.find('/');
          const bool held = slash != std::string::npos &&
                            std::any_of(resources.begin(), resources.end(), [&](const stored& s) {
                              return s.type == m.text.substr(0, slash) && s.id == m.text.substr(slash + 1);
                            });
          EXPECT_TRUE(held) << "a reference the EHR does not hold: " << m.text;
        } else {
          check_references(m);
        }
      }
    } else if (v.is_array()) {
      for (const auto& i : v.items) check_references(i);
    }
  }

  asio::io_context& io_;
  int requests_ = 0;
};

struct bundle_mapper_for_test {
  mappings::bundle_mapper mapper{test_support::default_config(), test_support::shipped_tables()};
};

// An Epic-like statement, but every type creatable, updatable and searchable by identifier, except
// those in `not_searchable` (only the ledger knows what was created of them).
write_setup setup_for(const std::set<std::string>& not_searchable = {}, party_rules parties = {}) {
  std::string resources;
  for (const auto& t : written_types()) {
    const std::string type(t.type);
    const std::string param = fhir::is_matched_by_tag(type) ? "_tag" : "identifier";
    resources += std::string(resources.empty() ? "" : ",") + R"({"type":")" + type +
                 R"(","interaction":[{"code":"create"},{"code":"update"},{"code":"read"},{"code":"search-type"}],)" +
                 R"("conditionalCreate":false,"conditionalUpdate":false,"versioning":"versioned-update","searchParam":[)" +
                 (not_searchable.count(type) ? "" : R"({"name":")" + param + R"(","type":"token"})") + "]}";
  }
  std::string error;
  const auto caps = read_capabilities(
      R"({"resourceType":"CapabilityStatement","rest":[{"mode":"server","resource":[)" + resources + "]}]}", error);
  EXPECT_TRUE(caps) << error;
  return {choose_strategy(*caps, write_mode::single, parties), parties};
}

class plan_delivery_test : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("plan-delivery-" + std::to_string(::getpid()) + "-" +
                                       ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    store_ = std::make_unique<sqlite_outbox>((dir_ / "outbox.db").string(), false);
    worker_ = std::make_unique<store_worker>(io_, *store_, store_worker::mode::inline_);
    const auto record = test_support::example("consultation");
    const auto m = test_support::map_record(record);
    bundle_ = m.text;
    store_->enqueue({{record.record_id, 1, "consultation", "patient-1", "{}"}}, {}, 1000);
    owner_ = store_->register_owner("sync", 1000);
    shared_ = shared_keys{};  // what this process learnt of the shared resources: of this EHR only
  }
  void TearDown() override {
    worker_.reset();
    store_.reset();
    fs::remove_all(dir_);
  }

  claimed_record claim() {
    auto c = store_->claim(owner_, 2000, 600000, 1);
    EXPECT_EQ(c.size(), 1u);
    return c.at(0);
  }

  // One delivery of the plan with what the ledger holds; runs the loop until it ends.
  plan_result deliver(rest_ehr& ehr, const claimed_record& c, const write_setup& setup) {
    std::string error;
    auto plan = fhir::read_plan(bundle_, error);
    EXPECT_TRUE(plan) << error;
    fhir::order_by_dependency(*plan);
    auto ledger = store_->ledger_lookup(plan_delivery::keys_of(*plan));
    plan_result out;
    bool done = false;
    plan_delivery::start({io_, ehr, *worker_, [] { return std::int64_t{3000}; }, shared_},
                         std::make_shared<const write_setup>(setup), c, std::move(*plan), std::move(ledger),
                         [] { return true; }, "test", [&](plan_result r) {
                           out = std::move(r);
                           done = true;
                         });
    io_.restart();
    while (!done && io_.run_one() > 0) {
    }
    EXPECT_TRUE(done);
    return out;
  }

  asio::io_context io_;
  fs::path dir_;
  std::unique_ptr<sqlite_outbox> store_;
  std::unique_ptr<store_worker> worker_;
  shared_keys shared_;
  std::string bundle_;
  std::int64_t owner_ = 0;
};

TEST_F(plan_delivery_test, one_request_per_resource_with_references_to_the_ids_the_ehr_gave) {
  rest_ehr ehr(io_);
  const auto c = claim();
  const auto r = deliver(ehr, c, setup_for());
  ASSERT_EQ(r.how, plan_result::ending::written) << r.detail;
  EXPECT_TRUE(ehr.no_duplicates());
  EXPECT_EQ(ehr.count("Patient"), 1u);
  EXPECT_EQ(ehr.count("Encounter"), 1u);
  EXPECT_EQ(ehr.count("Condition"), 1u);
  EXPECT_GT(ehr.count("Observation"), 3u);
  // Shared resources are looked for first; the record's own are simply created.
  EXPECT_EQ(ehr.log.at(0).rfind("GET /Organization?identifier=", 0), 0u) << ehr.log.at(0);
  EXPECT_EQ(std::count_if(ehr.log.begin(), ehr.log.end(), [](const std::string& l) { return l.rfind("GET /Observation", 0) == 0; }), 0);
  // Every write is in the ledger with the EHR's id, under the record.
  const auto ledger = store_->ledger_of_record(c.record_id);
  EXPECT_EQ(ledger.size(), ehr.resources.size());
  for (const auto& e : ledger) EXPECT_FALSE(e.ehr_id.empty()) << e.key.type;
  // Sent again (the record resent, say): nothing new is created, nothing is even asked.
  const int before = ehr.requests();
  const auto again = deliver(ehr, c, setup_for());
  EXPECT_EQ(again.how, plan_result::ending::written);
  EXPECT_EQ(ehr.requests(), before);
  EXPECT_TRUE(ehr.no_duplicates());
}

// Every request failing in turn, refused or committed with its answer lost, then the record sent
// again: the EHR holds the same resources as after a clean run, each once.
TEST_F(plan_delivery_test, every_request_failing_in_turn_then_a_resend_leaves_each_resource_once) {
  std::size_t clean_count = 0;
  int clean_requests = 0;
  {
    rest_ehr ehr(io_);
    ASSERT_EQ(deliver(ehr, claim(), setup_for()).how, plan_result::ending::written);
    clean_count = ehr.resources.size();
    clean_requests = ehr.requests();
  }
  ASSERT_GT(clean_requests, 10);
  for (int k = 1; k <= clean_requests; ++k) {
    for (const bool lose : {false, true}) {
      SCOPED_TRACE("request " + std::to_string(k) + (lose ? " committed, answer lost" : " refused"));
      TearDown();
      SetUp();
      rest_ehr ehr(io_);
      (lose ? ehr.lose_answer_at : ehr.refuse_at) = k;
      const auto first = claim();
      const auto r = deliver(ehr, first, setup_for());
      EXPECT_EQ(r.how, plan_result::ending::failed);
      // The resend: a new claim of the record (the first settled as a retry), the ledger as left.
      EXPECT_TRUE(store_->settle(first, {attempt_report::result::retry, 2000, "x", "", lose, std::nullopt}, 2000));
      ehr.refuse_at = ehr.lose_answer_at = 0;
      const auto again = deliver(ehr, claim(), setup_for());
      EXPECT_EQ(again.how, plan_result::ending::written) << again.detail;
      EXPECT_TRUE(again.possibly_twice.empty());
      EXPECT_TRUE(ehr.no_duplicates());
      EXPECT_EQ(ehr.resources.size(), clean_count);
    }
  }
}

// Where the EHR cannot find a type by identifier, only the ledger knows: an answer lost after the
// EHR committed a create leaves it in doubt, and the resend says so.
TEST_F(plan_delivery_test, a_lost_answer_for_a_type_only_the_ledger_knows_is_said_to_be_possibly_twice) {
  rest_ehr ehr(io_);
  const auto setup = setup_for({"Observation"});
  // The first Observation create: after the shared resources' searches and creates.
  const auto probe_setup = setup;
  {
    rest_ehr probe(io_);
    deliver(probe, claim(), probe_setup);
    const auto at = std::find_if(probe.log.begin(), probe.log.end(), [](const std::string& l) { return l == "POST /Observation"; });
    ASSERT_NE(at, probe.log.end());
    ehr.lose_answer_at = static_cast<int>(at - probe.log.begin()) + 1;
  }
  TearDown();
  SetUp();
  const auto first = claim();
  EXPECT_EQ(deliver(ehr, first, setup).how, plan_result::ending::failed);
  store_->settle(first, {attempt_report::result::retry, 2000, "x", "", true, std::nullopt}, 2000);
  const auto again = deliver(ehr, claim(), setup);
  EXPECT_EQ(again.how, plan_result::ending::written);
  EXPECT_EQ(again.possibly_twice, std::vector<std::string>{"Observation"});
  EXPECT_FALSE(ehr.no_duplicates()) << "the window the ledger cannot close, named";
}

TEST_F(plan_delivery_test, the_ehrs_own_patient_none_holds_one_is_used_several_dead_letter) {
  const auto setup = setup_for({}, {.match_patient = true, .match_practitioner = false});
  {
    rest_ehr ehr(io_);
    const auto r = deliver(ehr, claim(), setup);
    EXPECT_EQ(r.how, plan_result::ending::party_unknown);
    EXPECT_EQ(r.detail, "waits for the patient at the EHR: no Patient with the clinic's MRN yet");
    EXPECT_EQ(ehr.count("Patient"), 0u) << "never created";
    EXPECT_EQ(std::count_if(ehr.log.begin(), ehr.log.end(), [](const std::string& l) { return l.rfind("POST", 0) == 0; }),
              static_cast<long>(ehr.count("Organization") + ehr.count("Practitioner") + ehr.count("Device")));
  }
  const auto mrn_system = test_support::default_config().mrn_system();
  const auto mrn = test_support::example("consultation").patient.mrn;
  TearDown();
  SetUp();
  {
    rest_ehr ehr(io_);
    ehr.resources.push_back({"Patient", "ehr-7", 3, mrn_system, mrn, "{}"});
    const auto r = deliver(ehr, claim(), setup);
    ASSERT_EQ(r.how, plan_result::ending::written) << r.detail;
    EXPECT_EQ(ehr.count("Patient"), 1u);
    // The Encounter's subject is the EHR's own patient.
    const auto enc = std::find_if(ehr.resources.begin(), ehr.resources.end(), [](const stored& s) { return s.type == "Encounter"; });
    ASSERT_NE(enc, ehr.resources.end());
    EXPECT_NE(enc->body.find(R"("reference":"Patient/ehr-7")"), std::string::npos);
  }
  TearDown();
  SetUp();
  {
    rest_ehr ehr(io_);
    ehr.resources.push_back({"Patient", "ehr-7", 1, mrn_system, mrn, "{}"});
    ehr.resources.push_back({"Patient", "ehr-9", 1, mrn_system, mrn, "{}"});
    const auto r = deliver(ehr, claim(), setup);
    EXPECT_EQ(r.how, plan_result::ending::party_ambiguous);
    EXPECT_EQ(r.detail, "ambiguous patient: the EHR has Patient/ehr-7 and Patient/ehr-9 with the clinic's MRN");
  }
}

}  // namespace

namespace {

// The fold: an EHR that takes no MedicationAdministration, ChargeItem or AdverseEvent gets the
// procedure's note instead, as text or (ehr.note_format xhtml) as escaped XHTML.
TEST(folded_note, a_plan_gains_one_note_for_what_the_ehr_will_not_take) {
  const auto record = test_support::example("procedure");
  const auto m = test_support::map_record(record, test_support::history_for("procedure"));
  std::string error;
  auto plan = *fhir::read_plan(m.text, error);
  const bundle_mapper_for_test mapper;
  write_setup setup = setup_for();
  for (auto& t : setup.strategy.types) {
    if (t.type == "MedicationAdministration" || t.type == "ChargeItem" || t.type == "AdverseEvent") {
      t.sent = false;
      t.why = "not taken";
    }
  }
  const std::size_t writes = plan.writes.size();
  for (const auto format : {note_format::text, note_format::xhtml}) {
    auto p = plan;
    ASSERT_TRUE(add_folded_note(p, setup.strategy, default_left_out_rules(), mapper.mapper, record, format));
    ASSERT_EQ(p.writes.size(), writes + 1);
    EXPECT_EQ(p.folded, (std::vector<std::string>{"MedicationAdministration", "ChargeItem", "AdverseEvent"}));
    const auto& note = p.writes.back();
    EXPECT_EQ(note.type, "DocumentReference");
    EXPECT_EQ(note.key_value, record.record_id + "/note");
    fhir::json_value v;
    ASSERT_TRUE(fhir::parse_json_value(note.resource, v, false).empty());
    const auto& attachment = *v.find("content")->items.at(0).find("attachment");
    std::string b64 = attachment.find("data")->text;  // standard base64, read by the base64url decoder
    for (char& ch : b64) ch = ch == '+' ? '-' : ch == '/' ? '_' : ch;
    while (!b64.empty() && b64.back() == '=') b64.pop_back();
    const std::string data = base64url_decode(b64);
    if (format == note_format::xhtml) {
      EXPECT_EQ(attachment.find("contentType")->text, "application/xhtml+xml");
      EXPECT_EQ(data.rfind(R"(<div xmlns="http://www.w3.org/1999/xhtml"><p>)", 0), 0u) << data;
    } else {
      EXPECT_EQ(attachment.find("contentType")->text, "text/plain; charset=utf-8");
      EXPECT_NE(data.find("Units per muscle and side:"), std::string::npos) << data;
    }
    // It refers to the plan's own patient: the reference is rewritten like any other.
    EXPECT_NE(note.resource.find(R"("subject":{"reference":"urn:uuid:)"), std::string::npos);
  }
  // Skipped instead: no note.
  auto p = plan;
  left_out_rules skip = {{"MedicationAdministration", "skip"}, {"ChargeItem", "skip"}, {"AdverseEvent", "skip"}};
  EXPECT_FALSE(add_folded_note(p, setup.strategy, skip, mapper.mapper, record));
  EXPECT_EQ(p.writes.size(), writes);
  EXPECT_EQ(as_xhtml("a < b & \"c\"\nnext"), R"(<div xmlns="http://www.w3.org/1999/xhtml"><p>a &lt; b &amp; &quot;c&quot;</p><p>next</p></div>)");
}

}  // namespace
