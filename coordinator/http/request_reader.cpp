// coordinator/http/request_reader.cpp — the framing rules of request_reader.h over Boost.Beast's parser.
#include "coordinator/http/request_reader.h"

#include <algorithm>
#include <cctype>

#include "coordinator/http/framing.h"

namespace tessera::coordinator::http {

namespace beast = boost::beast;
namespace bhttp = boost::beast::http;

namespace {

std::string lower(beast::string_view s) {
  std::string out(s.data(), s.size());
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return std::tolower(c); });
  return out;
}

// At most 64 bytes of a client's header value in a message, non-printable bytes as '?'.
std::string quoted(beast::string_view s) {
  std::string out(s.data(), std::min<size_t>(s.size(), 64));
  for (char& c : out)
    if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) > 0x7e) c = '?';
  return "'" + out + (s.size() > 64 ? "...'" : "'");
}

// A client's X-Request-Id as given when every byte is one a log line and a header can carry as is, else "" (the
// server then makes one): no spaces, quotes or control bytes, so it can neither split a log line nor a header.
std::string usable_request_id(beast::string_view v) {
  if (v.empty() || v.size() > 128) return "";
  for (const char c : v)
    if (!std::isalnum(static_cast<unsigned char>(c)) && std::string_view("-_.:/=+").find(c) == std::string_view::npos)
      return "";
  return std::string(v.data(), v.size());
}

}  // namespace

void configure_parser(RequestParser& parser, const ReadLimits& limits) {
  parser.header_limit(limits.max_header_bytes);
  parser.body_limit(static_cast<uint64_t>(std::max<int64_t>(limits.max_body_bytes, 0)));
}

std::optional<FramingError> check_header(const RequestParser& parser, const ReadLimits& limits) {
  const auto& msg = parser.get();
  if (msg.version() != 10 && msg.version() != 11)
    return FramingError{505, "HTTP/" + std::to_string(msg.version() / 10) + "." + std::to_string(msg.version() % 10) +
                                 " is not supported: this server speaks HTTP/1.0 and HTTP/1.1"};
  for (const auto& f : msg) {
    if (f.name() == bhttp::field::transfer_encoding) {
      // Beast decodes chunked and nothing else; any other coding would reach the api as the coded bytes.
      bool only_chunked = true;
      for (auto coding : bhttp::token_list{f.value()})
        if (lower(coding) != "chunked") only_chunked = false;
      if (!only_chunked)
        return FramingError{501, "Transfer-Encoding " + quoted(f.value()) +
                                     " is not supported: send the body as it is, with Content-Length or chunked"};
    } else if (f.name() == bhttp::field::content_encoding) {
      if (lower(f.value()) != "identity")
        return FramingError{415, "Content-Encoding " + quoted(f.value()) + " is not supported: send plain JSON"};
    }
  }
  if (auto n = parser.content_length(); n && *n > static_cast<uint64_t>(std::max<int64_t>(limits.max_body_bytes, 0)))
    return FramingError{413, "the request body (" + std::to_string(*n) + " bytes) exceeds the limit of " +
                                 std::to_string(limits.max_body_bytes) + " bytes"};
  return std::nullopt;
}

FramingError parse_error(const beast::error_code& ec, const ReadLimits& limits) {
  if (ec == bhttp::error::header_limit)
    return {431, "the request header is larger than " + std::to_string(limits.max_header_bytes) + " bytes"};
  if (ec == bhttp::error::body_limit)
    return {413, "the request body exceeds the limit of " + std::to_string(limits.max_body_bytes) + " bytes"};
  if (ec == bhttp::error::bad_version)
    return {505, "the HTTP version is not supported: this server speaks HTTP/1.0 and HTTP/1.1"};
  if (ec == bhttp::error::partial_message || ec == bhttp::error::end_of_stream)
    return {400, "malformed HTTP request: the connection ended inside the request"};
  return {400, "malformed HTTP request: " + ec.message()};
}

HttpRequest take_request(RequestParser& parser) {
  auto& msg = parser.get();
  HttpRequest req;
  req.method = std::string(msg.method_string());
  const beast::string_view target = msg.target();
  req.path = std::string(target.substr(0, target.find('?')));
  if (auto it = msg.find(bhttp::field::authorization); it != msg.end()) req.authorization = std::string(it->value());
  if (auto it = msg.find("X-Request-Id"); it != msg.end()) req.request_id = usable_request_id(it->value());
  req.body = std::move(msg.body());
  return req;
}

ReadOutcome read_request(std::string_view bytes, const ReadLimits& limits) {
  ReadOutcome out;
  RequestParser parser;
  configure_parser(parser, limits);  // not eager until the header is checked: the server's order (header first)
  beast::error_code ec;
  bool checked = false;
  while (!parser.is_done()) {
    if (bytes.empty()) {
      parser.put_eof(ec);
      if (!ec) ec = bhttp::error::partial_message;
    } else {
      const size_t used = parser.put(boost::asio::buffer(bytes.data(), bytes.size()), ec);
      bytes.remove_prefix(std::min(used, bytes.size()));
      if (ec == bhttp::error::need_more) {
        ec = {};
        if (used == 0) bytes = {};  // it had all there is: the next turn is the end
      }
    }
    if (ec) {
      out.error = parse_error(ec, limits);
      return out;
    }
    if (!checked && parser.is_header_done()) {
      checked = true;
      if ((out.error = check_header(parser, limits))) return out;
      parser.eager(true);
    }
  }
  out.keep_alive = parser.get().keep_alive();
  out.request = take_request(parser);
  return out;
}

}  // namespace tessera::coordinator::http
