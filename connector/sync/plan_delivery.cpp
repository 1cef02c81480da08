// One record's plan, one request (or one batch) at a time.
#include "connector/sync/plan_delivery.h"

#include <algorithm>

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include "connector/failpoint.h"
#include "fhir/json_value.h"
#include "fhir/json_writer.h"
#include "fhir/search_values.h"
#include "fhir/transaction_response.h"

namespace connector {
namespace {

bool is_success(const ehr_answer& a) {
  return a.outcome.what == attempt_outcome::kind::response && a.outcome.http_status >= 200 &&
         a.outcome.http_status < 300;
}

std::string token_query(const ledger_key& key) {
  std::string q;
  fhir::append_token_parameter(q, fhir::is_matched_by_tag(key.type) ? "_tag" : "identifier", key.system, key.value);
  return q;
}

// The id and version of a write's answer: Location first, else the resource it returned.
fhir::resource_location written_where(const ehr_answer& a) {
  auto where = fhir::read_location(a.location);
  if (where.id.empty() && !a.body.empty()) {
    fhir::json_value v;
    if (fhir::parse_json_value(a.body, v, false).empty() && v.is_object()) {
      if (const auto* id = v.find("id"); id != nullptr && id->is_string()) where.id = id->text;
      if (const auto* meta = v.find("meta"); meta != nullptr && meta->is_object()) {
        if (const auto* vid = meta->find("versionId"); vid != nullptr && vid->is_string()) where.version = vid->text;
      }
    }
  }
  if (where.version.empty()) where.version = fhir::version_of_etag(a.etag);
  return where;
}

std::string status_text(int status) {
  switch (status) {
    case 200: return "200 OK";
    case 201: return "201 Created";
    default: return std::to_string(status);
  }
}

}  // namespace

void plan_delivery::start(parts p, std::shared_ptr<const write_setup> setup, claimed_record claim,
                          fhir::write_plan plan, std::vector<ledger_entry> ledger, std::function<bool()> may_send,
                          std::string request_id, done_fn done) {
  auto self = std::make_shared<plan_delivery>(p, std::move(setup), std::move(claim), std::move(plan), std::move(ledger),
                                              std::move(may_send), std::move(request_id), std::move(done));
  self->resolve_conditional_references(0);
}

std::vector<ledger_key> plan_delivery::keys_of(const fhir::write_plan& plan) {
  std::vector<ledger_key> keys;
  for (const auto& w : plan.writes) {
    keys.push_back({w.type, w.key_system, w.key_value});
    for (const auto& r : w.references) {
      if (auto t = fhir::read_conditional_reference(r)) keys.push_back({t->type, t->system, t->value});
    }
  }
  std::sort(keys.begin(), keys.end());
  keys.erase(std::unique(keys.begin(), keys.end(),
                         [](const ledger_key& a, const ledger_key& b) { return !(a < b) && !(b < a); }),
             keys.end());
  return keys;
}

plan_delivery::plan_delivery(parts p, std::shared_ptr<const write_setup> setup, claimed_record claim,
                             fhir::write_plan plan, std::vector<ledger_entry> ledger, std::function<bool()> may_send,
                             std::string request_id, done_fn done)
    : parts_(p), setup_(std::move(setup)), claim_(std::move(claim)), plan_(std::move(plan)),
      may_send_(std::move(may_send)), request_id_(std::move(request_id)), done_(std::move(done)),
      finished_(plan_.writes.size(), false) {
  for (auto& e : ledger) ledger_[e.key] = std::move(e);
}

plan_delivery::~plan_delivery() {
  for (const auto& k : holding_) parts_.shared.release(k);
}

void plan_delivery::let_go(const ledger_key& key) {
  if (holding_.erase(key) > 0) parts_.shared.release(key);
}

const type_route& plan_delivery::route_of(std::size_t i) const {
  static const type_route not_listed = [] {
    type_route r;
    r.sent = false;
    r.how = "not sent";
    r.why = "the connector does not know how to write it";
    return r;
  }();
  const auto* r = setup_->strategy.route(plan_.writes[i].type);
  return r != nullptr ? *r : not_listed;
}

ledger_key plan_delivery::key_of(std::size_t i) const {
  const auto& w = plan_.writes[i];
  return {w.type, w.key_system, w.key_value};
}

void plan_delivery::resolve(std::size_t i, std::optional<std::string> reference) {
  finished_[i] = true;
  resolved_[plan_.writes[i].full_url] = std::move(reference);
}

void plan_delivery::finish(plan_result::ending how, std::string detail, ehr_answer answer) {
  if (over_) return;
  over_ = true;
  for (const auto& k : holding_) parts_.shared.release(k);
  holding_.clear();
  result_.how = how;
  result_.detail = std::move(detail);
  result_.answer = std::move(answer);
  auto done = std::move(done_);
  auto result = std::move(result_);
  boost::asio::post(parts_.loop, [done = std::move(done), result = std::move(result)]() mutable { done(std::move(result)); });
}

// References to other records' resources ("Procedure?identifier=..."): the ledger, the plan
// itself, or a search. One that cannot be found is left out of the resources that hold it.
void plan_delivery::resolve_conditional_references(std::size_t next) {
  std::vector<std::string> wanted;
  for (const auto& w : plan_.writes) {
    for (const auto& r : w.references) {
      if (r.rfind("urn:", 0) != 0 && !resolved_.count(r)) wanted.push_back(r);
    }
  }
  for (const auto& ref : wanted) {
    const auto target = fhir::read_conditional_reference(ref);
    if (!target) {
      resolved_[ref] = ref;  // a literal reference: kept as it is
      continue;
    }
    const ledger_key key{target->type, target->system, target->value};
    // Written by this very plan: resolved once that write is.
    const auto in_plan = std::find_if(plan_.writes.begin(), plan_.writes.end(), [&](const fhir::planned_write& w) {
      return w.type == key.type && w.key_system == key.system && w.key_value == key.value;
    });
    if (in_plan != plan_.writes.end()) continue;
    if (const auto it = ledger_.find(key); it != ledger_.end() && !it->second.ehr_id.empty()) {
      resolved_[ref] = key.type + "/" + it->second.ehr_id;
      continue;
    }
    const auto* route = setup_->strategy.route(key.type);
    if (route == nullptr || !route->sent) {
      resolved_[ref] = std::nullopt;
      result_.left_out.push_back("references to " + key.type + ": never written to this EHR");
      continue;
    }
    if (!route->findable) {
      resolved_[ref] = std::nullopt;
      result_.left_out.push_back("a reference to " + key.type + ": not in the ledger, and the EHR cannot find it by identifier");
      continue;
    }
    auto self = shared_from_this();
    search(key, [self, ref, key, next](std::optional<std::vector<fhir::search_match>> found, const ehr_answer& a) {
      if (!found) return self->finish(plan_result::ending::failed, {}, a);
      if (found->empty()) {
        self->resolved_[ref] = std::nullopt;
        self->result_.left_out.push_back("a reference to " + key.type + ": not found at the EHR");
      } else {
        self->resolved_[ref] = key.type + "/" + found->front().id;
      }
      self->resolve_conditional_references(next + 1);
    });
    return;
  }
  if (setup_->strategy.mode == write_mode::batch) return next_wave();
  next_single();
}

// The resource as it goes out: references rewritten to what the EHR assigned, or dropped.
std::string plan_delivery::body_of(std::size_t i) {
  const auto& w = plan_.writes[i];
  return fhir::rewrite_references(w.resource, [&](std::string_view ref) -> std::optional<std::string> {
    if (const auto it = resolved_.find(ref); it != resolved_.end()) return it->second;
    if (ref.rfind("urn:", 0) == 0) {  // a write of this plan not written yet: a circle's edge back
      for (const auto& o : plan_.writes) {
        const auto* to = setup_->strategy.route(o.type);
        if (o.full_url == ref && to != nullptr && to->sent) {
          result_.left_out.push_back(w.type + ": its reference to " + o.type + ", written after it");
        }
      }
      return std::nullopt;
    }
    // A conditional reference to a write of this plan: by its key.
    if (const auto t = fhir::read_conditional_reference(ref)) {
      for (std::size_t j = 0; j < plan_.writes.size(); ++j) {
        const auto& o = plan_.writes[j];
        if (o.type == t->type && o.key_system == t->system && o.key_value == t->value) {
          const auto r = resolved_.find(o.full_url);
          return r != resolved_.end() ? r->second : std::nullopt;
        }
      }
    }
    return std::nullopt;
  });
}

plan_delivery::request plan_delivery::create_request(std::size_t i, bool conditional) {
  request r;
  r.write = i;
  r.method = "POST";
  r.url = plan_.writes[i].type;
  r.body = body_of(i);
  r.create = true;
  if (conditional) r.headers.emplace_back("If-None-Exist", token_query(key_of(i)));
  return r;
}

plan_delivery::request plan_delivery::update_request(std::size_t i, const ledger_entry& known) {
  request r;
  r.write = i;
  r.method = "PUT";
  r.url = plan_.writes[i].type + "/" + known.ehr_id;
  r.body = fhir::with_id(body_of(i), known.ehr_id);
  r.if_match = route_of(i).if_match && !known.version.empty();
  if (r.if_match) r.headers.emplace_back("If-Match", "W/\"" + known.version + "\"");
  return r;
}

void plan_delivery::decide(std::size_t i, std::function<void(decision)> then) {
  const auto& w = plan_.writes[i];
  const auto& route = route_of(i);
  const ledger_key key = key_of(i);
  decision d;
  if (!route.sent) {
    const bool folded = std::find(plan_.folded.begin(), plan_.folded.end(), w.type) != plan_.folded.end();
    result_.left_out.push_back(w.type + ": " + route.why + (folded ? "; folded into a DocumentReference note" : ""));
    resolve(i, std::nullopt);
    d.is = decision::what::left_out;
    return then(d);
  }
  if (route.shared) {
    // Known to this process already (another record found or made it), or being looked up or
    // created by another delivery now: then wait for it, and once held, read the ledger again
    // (the other may have left an intent or an id there), and decide.
    const auto mine = ledger_.find(key);
    const bool have_id = mine != ledger_.end() && !mine->second.ehr_id.empty();
    if (const auto* k = parts_.shared.known(key); k != nullptr && !have_id) {
      ledger_[key] = *k;
    } else if (!have_id && !holding_.count(key)) {
      if (!parts_.shared.try_hold(key)) {
        if (!may_send_()) {  // the claim's lease is running out: give the record back
          ehr_answer withheld;
          withheld.outcome.what = attempt_outcome::kind::withheld;
          return finish(plan_result::ending::failed, {}, withheld);
        }
        auto self = shared_from_this();
        auto timer = std::make_shared<boost::asio::steady_timer>(parts_.loop, std::chrono::milliseconds(10));
        timer->async_wait([self, timer, i, then](const boost::system::error_code&) {
          if (!self->over_) self->decide(i, then);
        });
        return;
      }
      holding_.insert(key);
      auto self = shared_from_this();
      parts_.store.run([key](outbox& s) { return s.ledger_lookup({key}); },
                       [self, key, i, then](store_result<std::vector<ledger_entry>> r) {
                         if (!r.ok()) return self->finish(plan_result::ending::store_failed, r.error->what());
                         if (!r.value->empty()) self->ledger_[key] = r.value->front();
                         self->decide(i, then);
                       });
      return;
    }
  }
  const auto known = ledger_.find(key);
  const bool in_ledger = known != ledger_.end() && !known->second.ehr_id.empty();
  const bool in_doubt = known != ledger_.end() && known->second.ehr_id.empty();
  if (in_ledger) {
    const std::string reference = w.type + "/" + known->second.ehr_id;
    if (w.mode == fhir::write_mode::create_if_absent || route.update == update_by::none) {
      if (w.mode == fhir::write_mode::upsert) {
        result_.left_out.push_back(w.type + ": the amendment's change (the EHR does not allow update)");
      }
      result_.made.push_back("known " + reference);
      resolve(i, reference);
      if (route.shared) {
        parts_.shared.learn(known->second);
        let_go(key);
      }
      return then(d);
    }
    d.is = decision::what::request;
    d.req = update_request(i, known->second);
    return then(d);
  }
  const bool must_find = route.create == create_by::match_only;
  // A record's own resources exist only if the connector made them: a search is worth its request
  // only when an earlier attempt may have (in doubt, or attempted before this one, perhaps in a
  // transaction before the EHR changed), or to find what an amendment updates.
  const bool may_exist = route.shared || in_doubt || claim_.attempts > 1 || w.mode == fhir::write_mode::upsert;
  if (must_find || (route.findable && may_exist && route.create != create_by::conditional) ||
      (w.mode == fhir::write_mode::upsert && route.update == update_by::by_id && route.findable)) {
    auto self = shared_from_this();
    search(key, [self, i, key, must_find, then](std::optional<std::vector<fhir::search_match>> found, const ehr_answer& a) {
      const auto& w = self->plan_.writes[i];
      if (!found) {
        self->finish(plan_result::ending::failed, {}, a);
        return;
      }
      const bool party = w.type == "Patient" || w.type == "Practitioner";
      if (found->size() > 1 && party) {
        std::string ids;
        for (const auto& m : *found) ids += (ids.empty() ? "" : " and ") + w.type + "/" + m.id;
        self->finish(plan_result::ending::party_ambiguous,
                     "ambiguous " + std::string(w.type == "Patient" ? "patient" : "practitioner") + ": the EHR has " + ids +
                         " with the clinic's " + (w.type == "Patient" ? "MRN" : "NPI"));
        return;
      }
      if (found->empty()) {
        if (must_find && party) {
          self->finish(plan_result::ending::party_unknown,
                       std::string("waits for the ") + (w.type == "Patient" ? "patient" : "practitioner") +
                           " at the EHR: no " + w.type + " with the clinic's " + (w.type == "Patient" ? "MRN" : "NPI") + " yet");
          return;
        }
        decision d;
        if (must_find) {  // a shared resource the EHR neither has nor creates: references to it go
          self->result_.left_out.push_back(w.type + ": not at the EHR, which does not create it");
          self->resolve(i, std::nullopt);
          self->let_go(key);
          d.is = decision::what::left_out;
          return then(d);
        }
        d.is = decision::what::request;
        d.req = self->create_request(i, false);
        return then(d);
      }
      // Found (the first, when a duplicate exists already): kept in the ledger, then as known.
      self->remember(key, found->front().id, found->front().version, [self, i, then] {
        self->result_.made.push_back("found " + self->plan_.writes[i].type + "/" +
                                     self->ledger_.at(self->key_of(i)).ehr_id);
        self->decide(i, then);
      });
    });
    return;
  }
  d.is = decision::what::request;
  if (w.mode == fhir::write_mode::upsert && route.update == update_by::conditional) {
    d.req.write = i;
    d.req.method = "PUT";
    d.req.url = w.type + "?" + token_query(key);
    d.req.body = body_of(i);
    d.req.create = true;  // it may create: the id comes back in Location
    return then(d);
  }
  if (route.create == create_by::conditional) {
    d.req = create_request(i, true);
    return then(d);
  }
  // The ledger alone knows: the intent is written before the request goes, so a crash between
  // them is known; one already in doubt is sent again, and said to be.
  if (in_doubt) result_.possibly_twice.push_back(w.type);
  d.req = create_request(i, false);
  auto self = shared_from_this();
  remember(key, "", "", [self, d, then] { then(d); });
}

void plan_delivery::search(const ledger_key& key,
                           std::function<void(std::optional<std::vector<fhir::search_match>>, const ehr_answer&)> then) {
  request r;
  r.method = "GET";
  r.url = key.type + "?" + token_query(key);
  const std::string type = key.type;
  send(r, [then, type](const ehr_answer& a) {
    if (!is_success(a)) return then(std::nullopt, a);
    auto found = fhir::read_search_matches(a.body, type);
    if (!found) {
      ehr_answer odd = a;
      odd.outcome.http_status = 502;  // not a searchset: treated like a gateway's answer, retried
      odd.error = "the EHR's search answer is not a searchset";
      return then(std::nullopt, odd);
    }
    then(std::move(found), a);
  });
}

void plan_delivery::send(const request& r, std::function<void(const ehr_answer&)> then) {
  auto req = std::make_shared<ehr_request>();
  req->path = "/" + r.url;
  if (r.url.empty()) req->path.clear();
  req->content_type = "application/fhir+json";
  req->body = r.body;
  req->request_id = request_id_ + "/q" + std::to_string(result_.requests + 1);
  req->may_send = may_send_;
  req->method = r.method;
  req->headers = r.headers;
  send_now(std::move(req), std::move(then));
}

// The pool may be busy with other records' requests between two of this one's: wait a moment.
void plan_delivery::send_now(std::shared_ptr<ehr_request> r, std::function<void(const ehr_answer&)> then) {
  if (over_) return;
  auto self = shared_from_this();
  ehr_request copy = *r;
  const bool taken = parts_.ehr.send(std::move(copy), [self, then](ehr_answer a) {
    ++self->result_.requests;
    then(a);
  });
  if (taken) return;
  auto timer = std::make_shared<boost::asio::steady_timer>(parts_.loop, std::chrono::milliseconds(20));
  timer->async_wait([self, timer, r, then](const boost::system::error_code&) { self->send_now(r, then); });
}

void plan_delivery::remember(const ledger_key& key, const std::string& id, const std::string& version, then_fn then) {
  ledger_entry e{key, claim_.record_id, id, version, 0};
  auto self = shared_from_this();
  const claimed_record claim = claim_;
  auto wall = parts_.wall;
  parts_.store.run(
      [claim, e, wall](outbox& s) {
        const bool held = s.ledger_record(claim, e, wall());
        failpoint("after_ledger_commit");  // the ledger knows; the next request is not sent yet
        return held;
      },
                   [self, e, then](store_result<bool> r) {
                     if (!r.ok()) return self->finish(plan_result::ending::store_failed, r.error->what());
                     if (!*r.value) return self->finish(plan_result::ending::lost, "the claim was taken over");
                     self->ledger_[e.key] = e;
                     if (!e.ehr_id.empty() && self->holding_.erase(e.key) > 0) {
                       self->parts_.shared.learn(e);
                       self->parts_.shared.release(e.key);
                     }
                     then();
                   });
}

// A write went through: its id into the ledger, then on.
void plan_delivery::on_written(const request& r, const ehr_answer& a, then_fn then) {
  failpoint("plan_after_answer");  // the EHR has the resource; the ledger does not know yet
  const auto& w = plan_.writes[r.write];
  auto where = written_where(a);
  if (where.id.empty() && !r.create) {  // an update by id: the id is the one it was sent to
    where.id = r.url.substr(r.url.find('/') + 1);
  }
  if (where.id.empty()) {
    result_.made.push_back(status_text(a.outcome.http_status) + " " + w.type + " (no id in the answer)");
    resolve(r.write, std::nullopt);
    let_go(key_of(r.write));
    return then();
  }
  const std::string reference = w.type + "/" + where.id;
  result_.made.push_back(status_text(a.outcome.http_status) + " " + reference +
                         (where.version.empty() ? "" : "/_history/" + where.version));
  auto self = shared_from_this();
  const std::size_t i = r.write;
  // A conditional create that found an existing resource of an amendment: update it by id.
  const bool found_not_updated = r.method == "POST" && a.outcome.http_status == 200 &&
                                 w.mode == fhir::write_mode::upsert && route_of(i).update != update_by::none;
  remember(key_of(i), where.id, where.version, [self, i, reference, found_not_updated, then] {
    if (found_not_updated) {
      self->result_.made.pop_back();
      return self->decide(i, [self, then](decision d) {
        if (d.is != decision::what::request) return then();
        self->send(d.req, [self, d, then](const ehr_answer& a) {
          if (!is_success(a)) return self->finish(plan_result::ending::failed, {}, a);
          self->on_written(d.req, a, then);
        });
      });
    }
    self->resolve(i, reference);
    then();
  });
}

void plan_delivery::next_single() {
  if (over_) return;
  if (at_ == plan_.writes.size()) return finish(plan_result::ending::written);
  const std::size_t i = at_++;
  auto self = shared_from_this();
  decide(i, [self, i](decision d) {
    if (self->over_) return;
    // Posted: a resend whose writes are all in the ledger would otherwise nest once per write.
    if (d.is != decision::what::request) return boost::asio::post(self->parts_.loop, [self] { self->next_single(); });
    self->send(d.req, [self, d](const ehr_answer& a) {
      if (a.outcome.http_status == 412 && d.req.if_match) {
        // Crash window 4: the ledger's version is behind. Read the current one, try once more.
        const auto& known = self->ledger_.at(self->key_of(d.req.write));
        request read;
        read.method = "GET";
        read.url = d.req.url;
        return self->send(read, [self, d, known](const ehr_answer& current) {
          if (!is_success(current)) return self->finish(plan_result::ending::failed, {}, current);
          ledger_entry fresh = known;
          fresh.version = written_where(current).version;
          request again = self->update_request(d.req.write, fresh);
          self->send(again, [self, again](const ehr_answer& a2) {
            if (!is_success(a2)) return self->finish(plan_result::ending::failed, {}, a2);
            self->on_written(again, a2, [self] { self->next_single(); });
          });
        });
      }
      if (!is_success(a)) return self->finish(plan_result::ending::failed, {}, a);
      self->on_written(d.req, a, [self] { self->next_single(); });
    });
  });
}

// Batch: every write whose references to earlier writes are all settled goes into one batch
// Bundle (entries of a batch cannot refer to each other); their answers settle more, until every
// write is done. A reference to a later write (a circle's edge back) is left out, as in single.
void plan_delivery::next_wave() {
  if (over_) return;
  wave_.clear();
  wave_requests_.clear();
  for (std::size_t i = 0; i < plan_.writes.size(); ++i) {
    if (finished_[i]) continue;
    bool ready = true;
    for (const auto& r : plan_.writes[i].references) {
      for (std::size_t j = 0; j < i && ready; ++j) {
        if (plan_.writes[j].full_url == r && !finished_[j]) ready = false;
      }
    }
    if (ready) wave_.push_back(i);
  }
  if (wave_.empty()) return finish(plan_result::ending::written);
  wave_at_ = 0;
  decide_in_wave();
}

void plan_delivery::decide_in_wave() {
  if (over_) return;
  if (wave_at_ < wave_.size()) {
    const std::size_t i = wave_[wave_at_++];
    auto self = shared_from_this();
    // Posted, so a wave of decisions made at once does not nest on the stack.
    return decide(i, [self](decision d) {
      if (d.is == decision::what::request) self->wave_requests_.push_back(std::move(d.req));
      boost::asio::post(self->parts_.loop, [self] { self->decide_in_wave(); });
    });
  }
  if (wave_requests_.empty()) return next_wave();
  fhir::json_writer out;
  out.begin_object();
  out.member("resourceType", "Bundle");
  out.member("type", "batch");
  out.key("entry");
  out.begin_array();
  for (const auto& r : wave_requests_) {
    out.begin_object();
    out.key("resource");
    out.raw(r.body);
    out.key("request");
    out.begin_object();
    out.member("method", r.method);
    out.member("url", r.url);
    for (const auto& [name, value] : r.headers) {
      if (name == "If-None-Exist") out.member("ifNoneExist", value);
      if (name == "If-Match") out.member("ifMatch", value);
    }
    out.end_object();
    out.end_object();
  }
  out.end_array();
  out.end_object();
  request batch;
  batch.method = "POST";
  batch.body = std::string(out.view());
  auto self = shared_from_this();
  send(batch, [self](const ehr_answer& a) {
    if (!is_success(a)) return self->finish(plan_result::ending::failed, {}, a);
    auto responses = fhir::read_transaction_response(a.body, true);
    if (!responses || responses->size() != self->wave_requests_.size()) {
      ehr_answer odd = a;
      odd.outcome.http_status = 502;
      odd.error = "the EHR's answer to a batch is not a batch-response with an entry per request";
      return self->finish(plan_result::ending::failed, {}, odd);
    }
    // Each entry's answer as if it had come alone; the successes are recorded first.
    self->wave_answers_.clear();
    for (const auto& r : *responses) {
      ehr_answer e;
      e.outcome.what = attempt_outcome::kind::response;
      e.outcome.http_status = std::atoi(r.status.c_str());
      e.location = r.location;
      e.etag = r.etag;
      e.body = r.outcome;
      self->wave_answers_.push_back(std::move(e));
    }
    self->wave_at_ = 0;
    self->record_wave();
  });
}

void plan_delivery::record_wave() {
  if (over_) return;
  while (wave_at_ < wave_requests_.size() && !is_success(wave_answers_[wave_at_])) ++wave_at_;
  if (wave_at_ == wave_requests_.size()) {
    for (const auto& e : wave_answers_) {
      if (!is_success(e)) return finish(plan_result::ending::failed, {}, e);
    }
    return next_wave();
  }
  const std::size_t at = wave_at_++;
  auto self = shared_from_this();
  on_written(wave_requests_[at], wave_answers_[at], [self] { self->record_wave(); });
}

}  // namespace connector
