// Fuzz target: the HTTP request path of the ingest API and the admin server, without sockets or
// a store. The bytes are what a client sends on one connection:
//   1. Boost.Beast's http::request_parser<http::string_body> with the server's limits (header
//      16 KiB, body 1 MiB: connector/net/http_server.cpp, session::read), fed as a stream is:
//      the header, then (eager) the body; the end of the input is the peer closing. Keep-alive
//      requests that follow on the connection are parsed in turn (at most 8).
//   2. For each parsed request, the server's view of it (session::request_of): the path
//      percent-decoded, the raw query, and the query values the admin API asks for
//      (connector::query_value "limit", "state", "record"); connector::bearer_matches on the
//      Authorization header.
//   3. A POST /v1/records body as ingest_api::handle takes it: the media type, then
//      connector::split_records (NDJSON or one record), mappings::read_record for each record
//      (what intake::take does before the store) and connector::ingest_answer.
// Beast reports bad input as error codes, the connector's helpers throw nothing: nothing is caught.
// Properties checked besides the sanitizers: every JSON answer is JSON; a decoded value is never
// longer than its text.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/buffer.hpp>
#include <boost/beast/http.hpp>

#include "connector/intake/ingest_api.h"
#include "connector/intake/record_files.h"
#include "connector/net/http_server.h"
#include "fuzz_support.h"
#include "mappings/record_reader.h"

namespace {

namespace beast = boost::beast;
namespace http = beast::http;

constexpr std::size_t header_limit = 16 * 1024;     // session::read
constexpr std::uint64_t body_limit = 1024 * 1024;   // server_settings::body_limit's default
constexpr int max_records = 1000;                   // ingest_api_config::max_records's default
constexpr int max_requests_per_input = 8;

void check_answer(const connector::http_response& r) {
  const std::string problem = fuzz::json_problem(r.body);
  FUZZ_CHECK(problem.empty(), "the answer is JSON", problem);
}

void ingest(const std::string& content_type, const std::string& body) {
  const auto type = connector::media_type(content_type);
  const bool ndjson = type == "application/x-ndjson" || type == "application/ndjson";
  if (!ndjson && type != "application/json") return;             // 415
  if (body.find_first_not_of(" \t\r\n") == std::string::npos) return;  // 400
  const auto texts = connector::split_records(body, ndjson);
  if (texts.empty() || texts.size() > static_cast<std::size_t>(max_records)) return;  // 400, 413
  static const mappings::code_tables& tables = fuzz::shipped_code_tables();
  std::vector<connector::intake_result> results;
  results.reserve(texts.size());
  for (const auto& text : texts) {
    FUZZ_CHECK(text.json.data() >= body.data() && text.json.data() + text.json.size() <= body.data() + body.size(),
               "a split record points into the body");
    auto read = mappings::read_record(text.json, tables);
    connector::intake_result r;
    r.line = text.line;
    r.record_id = read.record_id;
    if (read.record) {
      r.accepted = true;
      r.revision = read.record->revision;
      r.record_type = read.record->type_name();
    } else {
      r.problems = std::move(read.problems);
    }
    results.push_back(std::move(r));
  }
  check_answer(connector::ingest_answer(results));
}

// What the server makes of one parsed request.
void serve(const http::request<http::string_body>& req) {
  const std::string_view target = req.target();
  const auto q = target.find('?');
  const std::string path = connector::percent_decode(target.substr(0, q), false);
  FUZZ_CHECK(path.size() <= target.size(), "a decoded path is not longer than its text");
  const std::string query = q == std::string_view::npos ? std::string() : std::string(target.substr(q + 1));
  for (const char* name : {"limit", "state", "record"}) {
    const std::string value = connector::query_value(query, name);
    FUZZ_CHECK(value.size() <= query.size(), "a query value is not longer than the query");
  }
  (void)connector::percent_decode(query, true);
  (void)connector::bearer_matches(std::string(req[http::field::authorization]), "fuzz-token-0123456789");
  const std::string method(req.method_string());
  if (path == "/v1/records" && method == "POST") ingest(std::string(req[http::field::content_type]), req.body());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view rest = fuzz::text_of(data, size);
  for (int n = 0; n < max_requests_per_input && !rest.empty(); ++n) {
    http::request_parser<http::string_body> parser;
    parser.header_limit(header_limit);
    parser.body_limit(body_limit);
    beast::error_code ec;
    while (!parser.is_done()) {
      const bool header_done = parser.is_header_done();
      const std::size_t used = parser.put(boost::asio::buffer(rest.data(), rest.size()), ec);
      rest.remove_prefix(used);
      if (!header_done && parser.is_header_done()) parser.eager(true);  // async_read after async_read_header
      if (ec == http::error::need_more) {
        ec = {};
      } else if (ec) {
        break;
      }
      if (parser.is_done() || used > 0) continue;
      // No progress: all there is has been read and the peer closed (http::read_some on eof).
      if (!parser.got_some()) return 0;  // end_of_stream: the server just closes
      parser.put_eof(ec);
      break;
    }
    if (ec) {
      // The server answers 413 or 400 and closes.
      check_answer(connector::json_error(ec == http::error::body_limit ? 413 : 400, "malformed HTTP request"));
      return 0;
    }
    if (!parser.is_done()) return 0;
    const auto req = parser.release();
    serve(req);
    if (!req.keep_alive()) return 0;
  }
  return 0;
}
