// coordinator/http/request_reader.h — what makes a request well framed, shared by the server and the fuzzer.
//
// In: a parsed request header (Boost.Beast), or the whole bytes of one request. Out: the HttpRequest, or the HTTP
// error status a malformed one earns, with a message naming what is wrong:
//   400  malformed framing (a bad request line, a header line without a colon, conflicting or bad Content-Length,
//        Content-Length together with Transfer-Encoding, a bad chunk)
//   408  the request did not arrive within server.idle_timeout_s (the server's timer; read_request never does)
//   413  a body over max_body_bytes (the rest of it is never read)
//   415  a Content-Encoding other than identity
//   431  a header section over max_header_bytes
//   501  a Transfer-Encoding other than chunked (gzip, deflate, ...: the body would be read as plain text)
//   505  an HTTP version other than 1.0 and 1.1
// After any of these the connection closes: the framing of what follows can no longer be trusted.
// Thread-safety: stateless functions.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "coordinator/http/server.h"

namespace tessera::coordinator::http {

struct ReadLimits {
  int64_t max_body_bytes = 1 << 20;
  uint32_t max_header_bytes = 64 * 1024;
};

struct FramingError {
  int status = 400;
  std::string message;
};

// The outcome of reading one request: `error` set, or `request` complete. keep_alive says whether the connection
// may carry another request after the answer.
struct ReadOutcome {
  HttpRequest request;
  std::optional<FramingError> error;
  bool keep_alive = false;
};

// Parses `bytes` as one HTTP/1.x request with the server's limits and checks; bytes after the request are ignored.
// A request cut short by the end of `bytes` is a 400 (the connection's end came first).
ReadOutcome read_request(std::string_view bytes, const ReadLimits& limits);

}  // namespace tessera::coordinator::http
