// Getting, sharing and renewing the EHR access token.
#include "connector/auth/access_tokens.h"

#include <sys/stat.h>

#include <algorithm>
#include <cctype>

#include "fhir/json_value.h"

namespace connector {
namespace {

constexpr const char* jwt_bearer = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
constexpr std::int64_t default_expires_in_s = 300;  // an answer without expires_in

// application/x-www-form-urlencoded (RFC 6749 appendix B).
std::string form_encode(const std::string& value) {
  static const char digits[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : value) {
    if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
      out += static_cast<char>(c);
    } else if (c == ' ') {
      out += '+';
    } else {
      out += '%';
      out += digits[c >> 4];
      out += digits[c & 15];
    }
  }
  return out;
}

// An OAuth error code is a short token of printable ASCII (RFC 6749 5.2): anything else is not
// shown, so an endpoint's answer cannot carry arbitrary text into the status.
std::string error_code_of(const fhir::json_value& body) {
  const auto* e = body.find("error");
  if (e == nullptr || !e->is_string() || e->text.empty() || e->text.size() > 64) return "";
  for (char c : e->text) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.')) return "";
  }
  return e->text;
}

std::string strip_slash(std::string url) {
  while (!url.empty() && url.back() == '/') url.pop_back();
  return url;
}

// The token URL in the CapabilityStatement's SMART oauth-uris extension.
std::string token_url_in_capabilities(const fhir::json_value& cs) {
  const auto* rest = cs.find("rest");
  if (rest == nullptr || !rest->is_array()) return "";
  for (const auto& r : rest->items) {
    const auto* security = r.find("security");
    const auto* ext = security ? security->find("extension") : nullptr;
    if (ext == nullptr || !ext->is_array()) continue;
    for (const auto& e : ext->items) {
      const auto* url = e.find("url");
      if (!url || url->text != "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris") continue;
      const auto* inner = e.find("extension");
      if (inner == nullptr || !inner->is_array()) continue;
      for (const auto& i : inner->items) {
        const auto* name = i.find("url");
        const auto* value = i.find("valueUri");
        if (name && name->text == "token" && value && value->is_string()) return value->text;
      }
    }
  }
  return "";
}

}  // namespace

token_result read_token_answer(const ehr_answer& answer, std::int64_t& expires_in_s, std::string& scope) {
  if (answer.outcome.what != attempt_outcome::kind::response) {
    return {token_result::kind::unreachable, "", "token endpoint: " + answer.error};
  }
  const int status = answer.outcome.http_status;
  const std::string http = "HTTP " + std::to_string(status);
  fhir::json_value body;
  const bool json = fhir::parse_json_value(answer.body, body, false).empty() && body.is_object();
  if (status >= 200 && status < 300) {
    const auto* token = json ? body.find("access_token") : nullptr;
    const auto* type = json ? body.find("token_type") : nullptr;
    if (token == nullptr || !token->is_string() || token->text.empty()) {
      return {token_result::kind::refused, "", "token endpoint answered " + http + " without an access_token"};
    }
    std::string t = type && type->is_string() ? type->text : "";
    std::transform(t.begin(), t.end(), t.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    if (t != "bearer") return {token_result::kind::refused, "", "token endpoint issued a token that is not a bearer token"};
    for (char c : token->text) {
      if (static_cast<unsigned char>(c) < 0x21 || static_cast<unsigned char>(c) > 0x7e) {
        return {token_result::kind::refused, "", "token endpoint issued a token with characters a header cannot carry"};
      }
    }
    const auto* expires = body.find("expires_in");
    // Clamped: a fraction of a second would mean a token per request, 1e300 an overflow.
    expires_in_s = expires && expires->is_number() && expires->number > 0
                       ? static_cast<std::int64_t>(std::clamp(expires->number, 1.0, 86400.0))
                       : default_expires_in_s;
    const auto* granted = body.find("scope");
    scope = granted && granted->is_string() ? granted->text : "";
    return {token_result::kind::ok, token->text, ""};
  }
  if (retryable_status(status)) return {token_result::kind::unreachable, "", "token endpoint answered " + http};
  const std::string code = json ? error_code_of(body) : "";
  return {token_result::kind::refused, "",
          "token endpoint refused: " + (code.empty() ? std::string("no error code") : code) + " (" + http + ")"};
}

access_tokens::access_tokens(const ehr_auth_config& auth, std::string fhir_base, http_factory http,
                             std::function<std::int64_t()> steady_ms, assertion_sources sources)
    : auth_(auth),
      fhir_base_(strip_slash(std::move(fhir_base))),
      http_(std::move(http)),
      steady_ms_(std::move(steady_ms)),
      sources_(std::move(sources)),
      token_url_(auth.token_url.value_or("")) {
  using k = ehr_auth_config::kind;
  if (auth_.what == k::smart_backend) {
    key_.emplace(signing_key::load("ehr.auth.private_key_file", auth_.private_key_file, auth_.algorithm));
  } else if (auth_.what == k::client_secret_basic) {
    secret_ = read_secret_file("ehr.auth.client_secret_file", auth_.client_secret_file);
  } else if (auth_.what == k::bearer_file) {
    read_secret_file("ehr.auth.token_file", auth_.token_file);  // readable now, or refused at start
  }
}

access_tokens::~access_tokens() = default;

bool access_tokens::reload_credentials() {
  using k = ehr_auth_config::kind;
  if (auth_.what == k::smart_backend) {
    key_ = signing_key::load("ehr.auth.private_key_file", auth_.private_key_file, auth_.algorithm);
    return true;
  }
  if (auth_.what == k::client_secret_basic) {
    secret_ = read_secret_file("ehr.auth.client_secret_file", auth_.client_secret_file);
    return true;
  }
  return false;
}

token_status access_tokens::status() const {
  token_status s;
  s.kind = std::string(auth_kind_name(auth_.what));
  s.has_token = !token_.empty();
  if (!token_.empty() && auth_.what != ehr_auth_config::kind::bearer_file) {
    s.expires_in_ms = std::max<std::int64_t>(0, expires_at_ - steady_ms_());
  }
  s.granted_scope = granted_scope_;
  s.last_error = last_error_;
  s.requests = requests_;
  s.failures = failures_;
  return s;
}

token_result access_tokens::read_token_file() {
  struct stat st {};
  if (::stat(auth_.token_file.c_str(), &st) != 0) {
    return {token_result::kind::refused, "", "ehr.auth.token_file cannot be read"};
  }
  const std::int64_t mtime = static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
  if (token_.empty() || mtime != file_mtime_ns_ || st.st_size != file_size_) {
    try {
      token_ = read_secret_file("ehr.auth.token_file", auth_.token_file);
    } catch (const config_error&) {
      token_.clear();
      return {token_result::kind::refused, "", "ehr.auth.token_file cannot be read or is empty"};
    }
    file_mtime_ns_ = mtime;
    file_size_ = st.st_size;
  }
  return {token_result::kind::ok, token_, ""};
}

void access_tokens::get(std::function<void(token_result)> done) {
  if (auth_.what == ehr_auth_config::kind::bearer_file) {
    auto r = read_token_file();
    last_error_ = r.error;
    done(std::move(r));
    return;
  }
  const std::int64_t now = steady_ms_();
  if (!token_.empty() && now < expires_at_) {
    if (now >= renew_at_ && !fetching_) fetch();  // renewed in the background; this one still serves
    done({token_result::kind::ok, token_, ""});
    return;
  }
  waiting_.push_back(std::move(done));
  if (!fetching_) fetch();
}

void access_tokens::drop(const std::string& token) {
  if (auth_.what == ehr_auth_config::kind::bearer_file) return;  // the file is the only source: read again
  if (token == token_) token_.clear();
}

void access_tokens::fetch() {
  fetching_ = true;
  guarded([this] {
    if (token_url_.empty()) {
      discover();
    } else {
      request_token();
    }
  });
}

// A step that throws (an unusable URL, a certificate file gone, no random bytes) must still answer
// everyone waiting, or delivery would wait for ever: it is a refusal a person must fix.
void access_tokens::guarded(const std::function<void()>& step) {
  try {
    step();
  } catch (const std::exception& e) {
    finish({token_result::kind::refused, "", std::string("token request failed: ") + e.what()});
  }
}

// <base>/.well-known/smart-configuration, then <base>/metadata.
void access_tokens::discover() {
  if (!discovery_http_) discovery_http_ = http_(fhir_base_);
  auto from_capabilities = [this] {
    const bool taken = discovery_http_->send(
        metadata_request("discover-token-url"),
        [this](ehr_answer a) {
          if (a.outcome.what != attempt_outcome::kind::response || retryable_status(a.outcome.http_status)) {
            return finish({token_result::kind::unreachable, "", "token endpoint discovery: " +
                           (a.error.empty() ? "HTTP " + std::to_string(a.outcome.http_status) : a.error)});
          }
          fhir::json_value cs;
          if (fhir::parse_json_value(a.body, cs, false).empty()) token_url_ = token_url_in_capabilities(cs);
          if (token_url_.rfind("https://", 0) != 0) token_url_.clear();  // an EHR's word, but https only
          if (token_url_.empty()) {
            return finish({token_result::kind::refused, "",
                           "no token endpoint: neither .well-known/smart-configuration nor the CapabilityStatement "
                           "names an https one; set ehr.auth.token_url"});
          }
          guarded([this] { request_token(); });
        });
    if (!taken) finish({token_result::kind::unreachable, "", "token endpoint discovery: no free connection"});
  };
  const bool taken = discovery_http_->send(
      {.path = "/.well-known/smart-configuration", .content_type = "application/json", .body = "",
       .request_id = "discover-token-url", .may_send = nullptr, .accept = {}, .authorization = {}, .method = {}, .headers = {}},
      [this, from_capabilities](ehr_answer a) {
        if (a.outcome.what != attempt_outcome::kind::response || retryable_status(a.outcome.http_status)) {
          return finish({token_result::kind::unreachable, "", "token endpoint discovery: " +
                         (a.error.empty() ? "HTTP " + std::to_string(a.outcome.http_status) : a.error)});
        }
        fhir::json_value doc;
        if (a.outcome.http_status == 200 && fhir::parse_json_value(a.body, doc, false).empty()) {
          if (const auto* t = doc.find("token_endpoint"); t && t->is_string() && t->text.rfind("https://", 0) == 0) {
            token_url_ = t->text;
            return guarded([this] { request_token(); });
          }
        }
        guarded(from_capabilities);
      });
  if (!taken) finish({token_result::kind::unreachable, "", "token endpoint discovery: no free connection"});
}

void access_tokens::request_token() {
  if (!token_http_) token_http_ = http_(token_url_);
  std::string body = "grant_type=client_credentials&scope=" + form_encode(auth_.scope);
  std::string authorization;
  if (auth_.what == ehr_auth_config::kind::smart_backend) {
    assertion_claims claims{auth_.client_id, token_url_, auth_.key_id, auth_.jwks_url};
    body += "&client_assertion_type=" + form_encode(jwt_bearer) +
            "&client_assertion=" + form_encode(make_client_assertion(*key_, claims, sources_));
  } else {
    authorization = "Basic " + base64(form_encode(auth_.client_id) + ":" + form_encode(secret_));
  }
  ++requests_;
  const std::int64_t asked_at = steady_ms_();
  const bool taken = token_http_->send(
      {.path = "", .content_type = "application/x-www-form-urlencoded", .body = std::move(body),
       .request_id = "token-" + std::to_string(requests_), .may_send = nullptr, .accept = "application/json",
       .authorization = std::move(authorization), .method = {}, .headers = {}},
      [this, asked_at](ehr_answer a) {
        std::int64_t expires_in = 0;
        std::string scope;
        token_result r = read_token_answer(a, expires_in, scope);
        if (r.what == token_result::kind::ok) {
          token_ = r.token;
          granted_scope_ = scope;
          // Counted from when it was asked for: the answer's travel time is the token's too.
          expires_at_ = asked_at + expires_in * 1000;
          renew_at_ = asked_at + expires_in * 800;
        }
        finish(std::move(r));
      });
  if (!taken) finish({token_result::kind::unreachable, "", "token endpoint: no free connection"});
}

void access_tokens::finish(token_result result) {
  fetching_ = false;
  if (result.what == token_result::kind::ok) {
    last_error_.clear();
  } else {
    ++failures_;
    last_error_ = result.error;
    // A token still good keeps serving when its early renewal fails; the renewal is tried again
    // half-way to its expiry (at least a second later), not on every request.
    const std::int64_t now = steady_ms_();
    if (!token_.empty() && now < expires_at_) {
      renew_at_ = now + std::max<std::int64_t>(1000, (expires_at_ - now) / 2);
      result = {token_result::kind::ok, token_, ""};
    }
  }
  auto waiting = std::move(waiting_);
  waiting_.clear();
  for (auto& w : waiting) w(result);
}

}  // namespace connector
