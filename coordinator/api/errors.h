// coordinator/api/errors.h — the one place where failures become HTTP status codes and OpenAI-shaped bodies
// ({"error": {"message", "type", "param", "code"}}), llama.cpp's ex_wrapper style: validation throws
// ApiError, Api::handle catches everything and calls to_response(); nothing else picks a status code.
// Thread-safety: stateless.
#pragma once

#include <stdexcept>
#include <string>

#include "coordinator/http/server.h"
#include "coordinator/request.h"

namespace tessera::coordinator::api {

enum class ErrorKind {
  kInvalid,           // 400: malformed JSON, a bad field, a prompt longer than the context
  kUnauthorized,      // 401: missing or wrong API key
  kNotFound,          // 404: unknown route
  kModelNotFound,     // 404: `model` is not the served model
  kMethodNotAllowed,  // 405
  kTimeout,           // 408: the request did not arrive within server.idle_timeout_s
  kTooLarge,          // 413: body over server.max_body_bytes
  kUnsupportedMedia,  // 415: a Content-Encoding other than identity
  kHeaderTooLarge,    // 431: a header section over 64 KiB
  kNotImplemented,    // 501: a Transfer-Encoding other than chunked
  kHttpVersion,       // 505: HTTP/2 or another version than 1.0 / 1.1 on the wire
  kQueueFull,         // 429 + Retry-After
  kUnavailable,       // 503 + Retry-After: draining or not ready
  kInternal,          // 500
};

class ApiError : public std::runtime_error {
 public:
  ApiError(ErrorKind kind, const std::string& message, std::string param = "")
      : std::runtime_error(message), kind_(kind), param_(std::move(param)) {}
  ErrorKind kind() const { return kind_; }
  const std::string& param() const { return param_; }

 private:
  ErrorKind kind_;
  std::string param_;
};

int status_of(ErrorKind kind);
// The whole HTTP answer for an error (status, OpenAI body, Retry-After / Allow where they apply).
http::HttpResponse to_response(const ApiError& error, int retry_after_s = 1);
// The JSON body alone (also what a failed stream sends as its last event).
std::string error_body(const ApiError& error);
// A request the HTTP layer could not read (HttpRequest::error_status: 400, 408, 413, 415, 431, 501, 505).
ApiError from_framing_status(int status, const std::string& message);
// Why submit() refused → the error to answer with. kAccepted is a bug.
ApiError from_submit_status(SubmitStatus status, const std::string& why);

}  // namespace tessera::coordinator::api
