// coordinator/api/errors.cpp — status codes and OpenAI error bodies.
#include "coordinator/api/errors.h"

#include <nlohmann/json.hpp>

#include "common/check.h"

namespace tessera::coordinator::api {
namespace {

struct KindInfo {
  int status;
  const char* type;
  const char* code;
};

KindInfo info(ErrorKind k) {
  switch (k) {
    case ErrorKind::kInvalid:
      return {400, "invalid_request_error", "invalid_request"};
    case ErrorKind::kUnauthorized:
      return {401, "authentication_error", "invalid_api_key"};
    case ErrorKind::kNotFound:
      return {404, "not_found_error", "not_found"};
    case ErrorKind::kModelNotFound:
      return {404, "invalid_request_error", "model_not_found"};
    case ErrorKind::kMethodNotAllowed:
      return {405, "invalid_request_error", "method_not_allowed"};
    case ErrorKind::kTimeout:
      return {408, "invalid_request_error", "request_timeout"};
    case ErrorKind::kTooLarge:
      return {413, "invalid_request_error", "request_too_large"};
    case ErrorKind::kUnsupportedMedia:
      return {415, "invalid_request_error", "unsupported_media_type"};
    case ErrorKind::kHeaderTooLarge:
      return {431, "invalid_request_error", "header_too_large"};
    case ErrorKind::kNotImplemented:
      return {501, "invalid_request_error", "not_implemented"};
    case ErrorKind::kHttpVersion:
      return {505, "invalid_request_error", "http_version_not_supported"};
    case ErrorKind::kQueueFull:
      return {429, "rate_limit_error", "queue_full"};
    case ErrorKind::kUnavailable:
      return {503, "service_unavailable_error", "service_unavailable"};
    case ErrorKind::kInternal:
      return {500, "server_error", "internal_error"};
  }
  return {500, "server_error", "internal_error"};
}

}  // namespace

int status_of(ErrorKind kind) { return info(kind).status; }

std::string error_body(const ApiError& e) {
  const KindInfo i = info(e.kind());
  nlohmann::json j = {{"error",
                       {{"message", e.what()},
                        {"type", i.type},
                        {"param", e.param().empty() ? nlohmann::json(nullptr) : nlohmann::json(e.param())},
                        {"code", i.code}}}};
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

http::HttpResponse to_response(const ApiError& e, int retry_after_s) {
  http::HttpResponse r;
  r.status = status_of(e.kind());
  r.body = error_body(e);
  if (e.kind() == ErrorKind::kQueueFull || e.kind() == ErrorKind::kUnavailable)
    r.headers.emplace_back("Retry-After", std::to_string(retry_after_s));
  if (e.kind() == ErrorKind::kUnauthorized) r.headers.emplace_back("WWW-Authenticate", "Bearer");
  return r;
}

ApiError from_framing_status(int status, const std::string& message) {
  switch (status) {
    case 408:
      return ApiError(ErrorKind::kTimeout, message);
    case 413:
      return ApiError(ErrorKind::kTooLarge, message);
    case 415:
      return ApiError(ErrorKind::kUnsupportedMedia, message);
    case 431:
      return ApiError(ErrorKind::kHeaderTooLarge, message);
    case 501:
      return ApiError(ErrorKind::kNotImplemented, message);
    case 505:
      return ApiError(ErrorKind::kHttpVersion, message);
    default:
      return ApiError(ErrorKind::kInvalid, message);
  }
}

ApiError from_submit_status(SubmitStatus status, const std::string& why) {
  switch (status) {
    case SubmitStatus::kQueueFull:
      return ApiError(ErrorKind::kQueueFull, why.empty() ? "the waiting queue is full, retry later" : why);
    case SubmitStatus::kDraining:
      return ApiError(ErrorKind::kUnavailable, why.empty() ? "the server is shutting down" : why);
    case SubmitStatus::kInvalid:
      return ApiError(ErrorKind::kInvalid, why.empty() ? "the scheduler refused the request" : why);
    case SubmitStatus::kAccepted:
      break;
  }
  TESSERA_CHECK_MSG(false, "from_submit_status(kAccepted)");
}

}  // namespace tessera::coordinator::api
