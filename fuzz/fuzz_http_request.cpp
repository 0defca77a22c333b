// fuzz/fuzz_http_request.cpp — the HTTP request reader (coordinator/http/request_reader.h) on arbitrary bytes.
//
// Feeds: input[1:] to read_request() whole, and again the way the server's session reads a socket
// (server.cpp: async_read_header, check_header, then async_read): the same parser, limits and checks from
// framing.h, the header parsed alone before the body, the bytes arriving in two pieces cut where input[0] says
// (0 = all in the second piece, 255 = all in the first). Each with the server's limits (1 MiB body, 64 KiB
// header) and with tiny ones (16-byte body, 256-byte header), so that 413 and 431 are reached by small inputs.
// Must hold: no exception, no sanitizer report, no hang (-timeout); an error is one of 400 413 415 431 501 505; an
// accepted body fits the limit; the piecewise read gives the same outcome as read_request (the error status, or
// the same method, path, authorization, body and keep-alive).
#include <boost/beast/http.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "coordinator/http/framing.h"
#include "coordinator/http/request_reader.h"
#include "fuzz/fuzz_support.h"

namespace {

namespace http = tessera::coordinator::http;
namespace bhttp = boost::beast::http;

constexpr const char* kTarget = "fuzz_http_request";

// The server's session over a socket that delivers `first`, then `second`, then EOF: like a flat_buffer, the
// bytes the parser did not take stay in front of the next ones.
http::ReadOutcome read_in_pieces(std::string_view first, std::string_view second, const http::ReadLimits& limits) {
  http::ReadOutcome out;
  http::RequestParser parser;
  http::configure_parser(parser, limits);
  parser.eager(false);  // Beast's read_header: the header alone
  std::string buffer(first);
  std::string_view rest = second;
  bool eof = false, checked = false;
  boost::beast::error_code ec;
  while (!parser.is_done() && !ec) {
    bool need_input = buffer.empty();
    if (!need_input) {
      const size_t used = parser.put(boost::asio::buffer(buffer.data(), buffer.size()), ec);
      buffer.erase(0, used);
      if (ec == bhttp::error::need_more) {
        ec = {};
        need_input = true;
      } else if (!ec && used == 0 && !(parser.is_header_done() && !checked)) {
        out.error = http::FramingError{0, "the parser took nothing and asked for nothing"};
        return out;
      }
    }
    if (need_input && !ec) {
      if (!rest.empty()) {
        buffer.append(rest);
        rest = {};
      } else if (!eof) {
        eof = true;
        parser.put_eof(ec);
        if (!ec && !parser.is_done()) ec = bhttp::error::partial_message;
      } else {
        ec = bhttp::error::partial_message;
      }
    }
    if (!ec && !checked && parser.is_header_done()) {
      checked = true;
      if ((out.error = http::check_header(parser, limits))) return out;
      parser.eager(true);  // Beast's read: the body
    }
  }
  if (ec) {
    out.error = http::parse_error(ec, limits);
    return out;
  }
  out.keep_alive = parser.get().keep_alive();
  out.request = http::take_request(parser);
  return out;
}

std::string describe(const http::ReadOutcome& o) {
  if (o.error) return "error " + std::to_string(o.error->status) + " (" + o.error->message + ")";
  return "request " + o.request.method + " " + o.request.path + ", body of " + std::to_string(o.request.body.size()) +
         " bytes, keep-alive " + std::to_string(o.keep_alive);
}

void check(std::string_view bytes, size_t cut, const http::ReadLimits& limits) {
  const http::ReadOutcome whole = http::read_request(bytes, limits);
  tessera::fuzz::note(kTarget, describe(whole));
  if (whole.error) {
    const int s = whole.error->status;
    FUZZ_ASSERT(kTarget, s == 400 || s == 413 || s == 415 || s == 431 || s == 501 || s == 505, describe(whole));
  } else {
    FUZZ_ASSERT(kTarget, static_cast<int64_t>(whole.request.body.size()) <= limits.max_body_bytes, describe(whole));
  }
  const http::ReadOutcome pieces = read_in_pieces(bytes.substr(0, cut), bytes.substr(cut), limits);
  // A header that breaks several rules (garbled, too long, a bad version) fails on whichever Beast meets first, and
  // that depends on how much of it had arrived (it scans a line it has whole differently from one that grows): 400,
  // 431 and 505 may trade places. Beast also measures the header limit over what it was handed, so a header near
  // the limit may pass whole and fail in pieces (431): a limit, not a framing rule. Everything else — the checks of
  // a complete header (413, 415, 501) and the request itself — must not depend on the cut. In a malformed chunked
  // body the same holds for the body limit: Beast validates a chunk line it has whole differently from one that grew
  // (a bad extension: 400 whole, while in pieces it read on and passed the limit first: 413). Both refuse the request
  // and close the connection; a limit, not a framing rule.
  const auto malformed = [](int status) { return status == 400 || status == 431 || status == 505; };
  const auto is_431 = [](const http::ReadOutcome& o) { return o.error && o.error->status == 431; };
  const auto body_400_413 = [&] {
    if (!whole.error || !pieces.error) return false;
    const int a = whole.error->status, b = pieces.error->status;
    return (a == 400 && b == 413) || (a == 413 && b == 400);
  };
  const bool same =
      is_431(whole) || is_431(pieces) || body_400_413() ||
      (whole.error ? pieces.error && (pieces.error->status == whole.error->status ||
                                      (malformed(pieces.error->status) && malformed(whole.error->status)))
                   : !pieces.error && pieces.request.method == whole.request.method &&
                         pieces.request.path == whole.request.path &&
                         pieces.request.authorization == whole.request.authorization &&
                         pieces.request.body == whole.request.body && pieces.keep_alive == whole.keep_alive);
  FUZZ_ASSERT(
      kTarget, same,
      "read_request: " + describe(whole) + "; in pieces cut at " + std::to_string(cut) + ": " + describe(pieces));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string_view bytes = tessera::fuzz::as_view(data + 1, size - 1);
  if (bytes.empty()) return 0;  // no request at all: the server closes such a connection without an answer
  const size_t cut = bytes.size() * data[0] / 255;
  check(bytes, cut, http::ReadLimits{});
  http::ReadLimits tiny;
  tiny.max_body_bytes = 16;
  tiny.max_header_bytes = 256;
  check(bytes, cut, tiny);
  return 0;
}
