// coordinator/http/server.h — the first stage of the coordinator: HTTP/1.1 on Boost.Beast.
//
// In: bytes on a listening TCP socket. Out: one HttpRequest per request, handed to the Handler together with
// an Exchange through which the answer goes back — a whole response, or a chunked stream (server-sent events).
// Guarantees:
//  - async, keep-alive (HTTP/1.1 default, `Connection: close` honoured), one io_context run by a fixed pool
//    of threads; each connection is serialized on its own strand.
//  - a malformed request (request_reader.h: bad framing 400, a header over 64 KiB 431, a body over
//    max_body_bytes 413, an unknown Transfer-Encoding 501, Content-Encoding 415, HTTP/2 on the wire 505) and one
//    that has not arrived whole within idle_timeout_s (408) reach the handler with `error` set, so that the api
//    layer words the answer; the connection closes after it. A connection idle for idle_timeout_s between
//    requests is closed without an answer.
//  - a client that goes away before its answer is complete (EOF, a reset or a failed write) fires the Exchange's
//    disconnect callback exactly once, so the request behind it can be cancelled; whatever was queued for it is
//    dropped once no write is in flight.
// The statuses above are the only HTTP policy here: what a route answers is the api layer's business.
// Thread-safety: Server::start/stop from one thread. Exchange: every method may be called from any thread
// (the scheduler thread streams tokens into it); calls are applied in order on the connection's strand.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace tessera::coordinator::http {

using Headers = std::vector<std::pair<std::string, std::string>>;

struct HttpRequest {
  std::string method;  // "GET", "POST", ...
  std::string path;    // the target without its query string
  std::string body;
  std::string authorization;  // the Authorization header ("" when absent)
  // The client's X-Request-Id when it is a usable one (1..128 bytes of letters, digits and -_.:/=+), else one the
  // server made ("req-" + 24 hex digits). Every response carries it back as X-Request-Id; the access log names it.
  std::string request_id;
  // Set when the request could not be read (request_reader.h): the status it earns (400, 408, 413, 415, 431,
  // 501, 505) and why. method and path are "" unless its header was read.
  int error_status = 0;
  std::string error_message;
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  Headers headers;  // extra headers (Retry-After, ...)
};

class Exchange {
 public:
  virtual ~Exchange() = default;
  // A complete response; ends the exchange. Later calls are ignored.
  virtual void respond(HttpResponse response) = 0;
  // Starts a chunked response (text/event-stream by default); then write() chunks and end().
  virtual void start_stream(int status, std::string content_type, Headers headers) = 0;
  virtual void write(std::string chunk) = 0;
  virtual void end() = 0;
  // Called at most once, on an io thread, when the client disconnects before the exchange ended. When the
  // client is already gone at registration, `fn` runs at once (on an io thread).
  virtual void on_disconnect(std::function<void()> fn) = 0;
  virtual bool disconnected() const = 0;
};

using Handler = std::function<void(HttpRequest, std::shared_ptr<Exchange>)>;

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8000;  // 0: an ephemeral port (see Server::port())
  int threads = 4;
  int64_t max_body_bytes = 1 << 20;
  // A request must arrive whole within this many seconds of the connection becoming idle (accepted, or its last
  // answer written): else 408 when part of it came, a silent close when nothing did.
  double idle_timeout_s = 60;
};

class Server {
 public:
  Server(ServerOptions options, Handler handler);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds, listens and starts the pool. Throws tessera::Error naming host:port when the bind fails.
  void start();
  int port() const;  // the bound port (after start)
  // Exchanges that have started and not ended (responses still being written).
  int64_t open_exchanges() const;
  // Stops accepting, waits up to grace_s for open exchanges to finish writing, closes every connection still open
  // (idle keep-alive ones too; an exchange cut short fires its disconnect callback), then stops the pool. Bounded:
  // grace_s + 2 s at most. Exchanges the handler still holds stay valid; their calls are dropped from then on.
  void stop(double grace_s = 2.0);

  struct Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace tessera::coordinator::http
