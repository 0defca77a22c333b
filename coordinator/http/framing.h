// coordinator/http/framing.h — internal to coordinator/http: the Beast parser with the server's limits, the checks
// Beast leaves to its user, and the parse errors mapped to HTTP statuses (request_reader.h lists them). The server
// (server.cpp) and read_request() (request_reader.cpp) both go through these, so a fuzzer of read_request covers
// the server's framing rules.
#pragma once

#include <utility>  // before Asio: Boost 1.74 under C++20 with g++ 12

#include <boost/beast/core/error.hpp>
#include <boost/beast/http.hpp>
#include <optional>

#include "coordinator/http/request_reader.h"

namespace tessera::coordinator::http {

using RequestParser = boost::beast::http::request_parser<boost::beast::http::string_body>;

// A fresh parser's limits: header_limit = max_header_bytes, body_limit = max_body_bytes.
void configure_parser(RequestParser& parser, const ReadLimits& limits);
// What Beast accepts but this server refuses, checked once the header is parsed: the HTTP version, a
// Transfer-Encoding other than chunked, a Content-Encoding, a Content-Length over the body limit.
std::optional<FramingError> check_header(const RequestParser& parser, const ReadLimits& limits);
// A Beast parse error as the status it earns (431 header_limit, 413 body_limit, 400 otherwise).
FramingError parse_error(const boost::beast::error_code& ec, const ReadLimits& limits);
// The parsed request (the body moved out of the parser).
HttpRequest take_request(RequestParser& parser);

}  // namespace tessera::coordinator::http
