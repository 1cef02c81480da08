// Alert webhook posts.
#include "connector/observe/webhook.h"

#include <cstdio>

#include "connector/observe/sync_log.h"
#include "fhir/json_writer.h"

namespace connector {

namespace {
constexpr std::size_t max_waiting = 1000;  // beyond this the oldest are dropped: the log keeps them
}

alert_webhook::alert_webhook(boost::asio::io_context& loop, const alerts_config& config) {
  ehr_settings settings;
  settings.base_url = config.webhook_url;
  settings.section = "alerts";
  settings.url_key = "webhook_url";
  settings.ca_file = config.ca_file;
  settings.connections = 1;
  settings.timeout = std::chrono::seconds(10);
  client_ = std::make_unique<ehr_client>(loop, settings);
}

std::string alert_webhook::payload(const alert_change& change) {
  fhir::json_writer out;
  out.begin_object();
  out.member("source", "migraine-connector");
  out.member("alert", change.alert.key);
  out.member("state", change.opened ? "open" : "closed");
  out.member("detail", change.alert.detail);
  out.member("opened_at", utc_text(change.alert.opened_at_ms));
  out.member("at", utc_text(change.at_ms));
  out.end_object();
  return std::string(out.view());
}

void alert_webhook::queue(const alert_change& change) {
  payloads_.push_back(payload(change));
  // The oldest go first, but never the one being posted (it is popped when its answer comes).
  while (payloads_.size() > max_waiting) payloads_.erase(payloads_.begin() + (posting_ ? 1 : 0));
}

void alert_webhook::flush() {
  if (posting_ || payloads_.empty()) return;
  posting_ = true;
  post_next();
}

void alert_webhook::post_next() {
  if (payloads_.empty()) {
    posting_ = false;
    return;
  }
  const bool taken = client_->send(
      {.path = "", .content_type = "application/json", .body = payloads_.front(),
       .request_id = "alert-" + std::to_string(++sent_), .may_send = nullptr, .accept = {}, .authorization = {}, .method = {}, .headers = {}},
      [this](ehr_answer answer) {
        std::string error;
        if (answer.outcome.what != attempt_outcome::kind::response) {
          error = answer.error;
        } else if (answer.outcome.http_status < 200 || answer.outcome.http_status >= 300) {
          error = "HTTP " + std::to_string(answer.outcome.http_status);
        }
        if (!error.empty()) {
          posting_ = false;
          std::fprintf(stderr, "migraine-connector: alert webhook: %s; %zu alert change(s) will be posted again\n",
                       error.c_str(), payloads_.size());
          return;
        }
        payloads_.pop_front();
        post_next();
      });
  if (!taken) posting_ = false;
}

}  // namespace connector
