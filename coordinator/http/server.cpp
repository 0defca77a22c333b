// coordinator/http/server.cpp — Beast sessions: read a request, hand it over, write what the Exchange gets.
//
// Responses are written as raw HTTP/1.1 bytes from one queue per connection (a whole response, or a header
// followed by chunks), so a streamed answer and a plain one share the same write path. While an answer is
// pending the socket is watched for EOF (a peek, never a read, so a pipelined request is left in place).
// Reading a request: header (then framing.h's checks), then body, all within one idle_timeout_s timer.
// Stopping: the acceptor closes, open answers get the grace period, then every connection still open is closed on
// its strand (idle keep-alive ones included) and the pool runs out of work; Exchange calls after that are dropped.
#include <utility>  // before Asio: Boost 1.74 under C++20 with g++ 12

#include "coordinator/http/server.h"

#include <sys/socket.h>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <deque>
#include <future>
#include <mutex>
#include <optional>
#include <random>
#include <unordered_map>

#include "common/check.h"
#include "coordinator/http/framing.h"

namespace tessera::coordinator::http {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = net::ip::tcp;

namespace {
class Session;
}  // namespace

struct Server::Impl {
  ServerOptions options;
  Handler handler;
  net::io_context ioc;
  std::optional<tcp::acceptor> acceptor;  // on its own strand: accept completions and stop()'s close never overlap
  std::optional<net::executor_work_guard<net::io_context::executor_type>> work;
  std::vector<std::thread> threads;
  std::atomic<int64_t> open{0};
  int port = 0;
  // Every live connection, so that stop() can close those still open. A Session holds this Impl: without the
  // close, an idle keep-alive connection would stay open after stop(), its pending read never completed, and
  // the Session and the Impl would hold each other forever.
  std::mutex sessions_mu;
  std::unordered_map<uint64_t, std::weak_ptr<Session>> sessions;  // guarded by sessions_mu
  uint64_t next_session_id = 0;                                   // guarded by sessions_mu
  // Set by stop() before the pool ends: an Exchange call after that is dropped, not queued on an io_context that
  // nothing runs any more (the queued call would hold its Session, and through it this Impl, forever).
  std::mutex post_mu;
  bool stopped = false;  // guarded by post_mu
};

namespace {

// "req-" + 24 hex digits from a per-thread generator seeded from the OS.
std::string new_request_id() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  char buf[32];
  std::snprintf(buf, sizeof buf, "req-%016llx%08x", static_cast<unsigned long long>(rng()),
                static_cast<unsigned>(rng() & 0xffffffffu));
  return buf;
}

std::string status_line(int status) {
  const auto reason = bhttp::obsolete_reason(bhttp::int_to_status(static_cast<unsigned>(status)));
  return "HTTP/1.1 " + std::to_string(status) + " " + std::string(reason.data(), reason.size()) + "\r\n";
}

std::string format_head(int status, const std::string& content_type, const Headers& headers, bool keep_alive,
                        const std::string& request_id) {
  std::string s = status_line(status);
  s += "Server: tessera\r\nContent-Type: " + content_type + "\r\n";
  s += "X-Request-Id: " + request_id + "\r\n";
  s += keep_alive ? "Connection: keep-alive\r\n" : "Connection: close\r\n";
  for (const auto& [k, v] : headers) s += k + ": " + v + "\r\n";
  return s;
}

class ExchangeImpl;

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, std::shared_ptr<Server::Impl> impl) : impl_(std::move(impl)), stream_(std::move(socket)) {
    std::lock_guard lock(impl_->sessions_mu);
    id_ = impl_->next_session_id++;
  }
  ~Session() {
    std::lock_guard lock(impl_->sessions_mu);
    impl_->sessions.erase(id_);
  }
  uint64_t id() const { return id_; }
  Server::Impl& impl() { return *impl_; }

  void start() {
    net::dispatch(stream_.get_executor(), [self = shared_from_this()] { self->do_read(); });
  }
  net::any_io_executor executor() { return stream_.get_executor(); }

  // --- strand only below ---
  void enqueue(std::string bytes) {
    if (closed_) return;
    out_.push_back(std::move(bytes));
    if (!writing_) write_next();
  }
  void exchange_ended() {
    ending_ = true;
    if (!writing_) exchange_done();
  }
  void close();

 private:
  ReadLimits limits() const {
    ReadLimits l;
    l.max_body_bytes = impl_->options.max_body_bytes;
    return l;
  }
  void do_read() {
    if (closed_) return;
    parser_.emplace();
    configure_parser(*parser_, limits());
    timed_out_ = false;
    const uint64_t gen = ++read_gen_;
    timer_.expires_after(std::chrono::milliseconds(static_cast<int64_t>(impl_->options.idle_timeout_s * 1000)));
    timer_.async_wait(net::bind_executor(
        stream_.get_executor(), [self = shared_from_this(), gen](beast::error_code ec) { self->on_timer(ec, gen); }));
    bhttp::async_read_header(stream_, buffer_, *parser_,
                             [self = shared_from_this()](beast::error_code ec, size_t) { self->on_header(ec); });
  }
  void on_timer(beast::error_code ec, uint64_t gen) {
    if (ec || closed_ || current_ || gen != read_gen_) return;  // cancelled, or the request arrived in time
    timed_out_ = true;
    beast::error_code ignored;
    stream_.socket().cancel(ignored);  // the pending read completes with operation_aborted
  }
  void on_header(beast::error_code ec) {
    if (closed_) return;
    if (ec) return read_failed(ec);
    if (auto error = check_header(*parser_, limits())) return reject(*error);
    bhttp::async_read(stream_, buffer_, *parser_,
                      [self = shared_from_this()](beast::error_code ec, size_t) { self->on_read(ec); });
  }
  void on_read(beast::error_code ec);
  void read_failed(beast::error_code ec);
  void reject(const FramingError& error);
  void dispatch(HttpRequest req);

  void write_next() {
    writing_ = true;
    net::async_write(stream_, net::buffer(out_.front()),
                     [self = shared_from_this()](beast::error_code ec, size_t) { self->on_write(ec); });
  }
  void on_write(beast::error_code ec) {
    writing_ = false;
    if (ec || closed_) {
      // close() left the queue alone while this write was in flight (its buffer is out_.front()): drop it now.
      out_.clear();
      close();
      return;
    }
    out_.pop_front();
    if (!out_.empty()) {
      write_next();
      return;
    }
    if (ending_) exchange_done();
  }
  void exchange_done();
  void watch();
  void on_watch(beast::error_code ec, uint64_t gen);

  // Declared first, destroyed last: when this Session holds the last reference to the Impl (an Exchange the handler
  // kept after the Server went), the io_context goes with it, and the socket and timer must be gone by then.
  std::shared_ptr<Server::Impl> impl_;
  beast::tcp_stream stream_;
  net::steady_timer timer_{stream_.get_executor()};
  beast::flat_buffer buffer_;
  std::optional<RequestParser> parser_;
  std::deque<std::string> out_;
  bool writing_ = false, ending_ = false, closed_ = false, keep_alive_ = true, timed_out_ = false;
  std::shared_ptr<ExchangeImpl> current_;
  uint64_t watch_gen_ = 0, read_gen_ = 0;
  uint64_t id_ = 0;  // the key in Impl::sessions
};

class ExchangeImpl final : public Exchange, public std::enable_shared_from_this<ExchangeImpl> {
 public:
  ExchangeImpl(std::shared_ptr<Session> session, bool keep_alive, std::string request_id)
      : session_(std::move(session)), keep_alive_(keep_alive), request_id_(std::move(request_id)) {}

  void respond(HttpResponse r) override {
    post([r = std::move(r)](ExchangeImpl& self) mutable {
      if (self.ended_ || self.streaming_) return;
      self.ended_ = true;
      std::string s = format_head(r.status, r.content_type, r.headers, self.keep_alive_, self.request_id_);
      s += "Content-Length: " + std::to_string(r.body.size()) + "\r\n\r\n";
      s += r.body;
      self.session_->enqueue(std::move(s));
      self.session_->exchange_ended();
    });
  }
  void start_stream(int status, std::string content_type, Headers headers) override {
    post([status, ct = std::move(content_type), h = std::move(headers)](ExchangeImpl& self) {
      if (self.ended_ || self.streaming_) return;
      self.streaming_ = true;
      std::string s = format_head(status, ct, h, self.keep_alive_, self.request_id_);
      s += "Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n";
      self.session_->enqueue(std::move(s));
    });
  }
  void write(std::string chunk) override {
    if (chunk.empty()) return;  // an empty chunk would end the stream
    post([c = std::move(chunk)](ExchangeImpl& self) {
      if (self.ended_ || !self.streaming_) return;
      char hex[32];
      std::snprintf(hex, sizeof hex, "%zx\r\n", c.size());
      self.session_->enqueue(hex + c + "\r\n");
    });
  }
  void end() override {
    post([](ExchangeImpl& self) {
      if (self.ended_ || !self.streaming_) return;
      self.ended_ = true;
      self.session_->enqueue("0\r\n\r\n");
      self.session_->exchange_ended();
    });
  }
  void on_disconnect(std::function<void()> fn) override {
    post([fn = std::move(fn)](ExchangeImpl& self) mutable {
      if (self.disconnected_.load()) {
        fn();
      } else if (!self.ended_) {
        self.on_disconnect_ = std::move(fn);
      }
    });
  }
  bool disconnected() const override { return disconnected_.load(); }

  // strand only
  void fire_disconnect() {
    if (disconnected_.exchange(true)) return;
    if (auto fn = std::move(on_disconnect_)) fn();
    on_disconnect_ = nullptr;
  }
  bool ended() const { return ended_; }

 private:
  template <class F>
  void post(F&& f) {
    Server::Impl& impl = session_->impl();
    std::lock_guard lock(impl.post_mu);
    if (impl.stopped) return;  // the server has stopped: nothing would ever run it
    net::post(session_->executor(), [self = shared_from_this(), f = std::forward<F>(f)]() mutable { f(*self); });
  }

  std::shared_ptr<Session> session_;
  bool keep_alive_;
  std::string request_id_;  // echoed as X-Request-Id
  std::atomic<bool> disconnected_{false};
  bool ended_ = false, streaming_ = false;
  std::function<void()> on_disconnect_;
};

void Session::on_read(beast::error_code ec) {
  if (closed_) return;
  if (ec) return read_failed(ec);
  timer_.cancel();
  keep_alive_ = parser_->get().keep_alive();
  dispatch(take_request(*parser_));
}

void Session::read_failed(beast::error_code ec) {
  timer_.cancel();
  const bool got_some = parser_ && parser_->got_some();
  if (timed_out_) {
    if (got_some)
      return reject({408, "the request did not arrive within server.idle_timeout_s (" +
                              std::to_string(impl_->options.idle_timeout_s) + " s)"});
    return close();  // an idle keep-alive connection: nothing to answer
  }
  // The client went away (before a request, or inside one): nobody is left to answer.
  if (!got_some || ec == bhttp::error::end_of_stream || ec == bhttp::error::partial_message || ec == net::error::eof ||
      ec == net::error::connection_reset || ec == net::error::operation_aborted || ec == net::error::broken_pipe)
    return close();
  reject(parse_error(ec, limits()));
}

void Session::reject(const FramingError& error) {
  timer_.cancel();
  keep_alive_ = false;  // what follows in the socket cannot be framed any more
  HttpRequest req;
  if (parser_ && parser_->is_header_done()) {
    req.method = std::string(parser_->get().method_string());
    const beast::string_view target = parser_->get().target();
    req.path = std::string(target.substr(0, target.find('?')));
  }
  req.error_status = error.status;
  req.error_message = error.message;
  dispatch(std::move(req));
}

void Session::dispatch(HttpRequest req) {
  ending_ = false;
  if (req.request_id.empty()) req.request_id = new_request_id();
  current_ = std::make_shared<ExchangeImpl>(shared_from_this(), keep_alive_, req.request_id);
  impl_->open.fetch_add(1);
  ++watch_gen_;
  watch();
  auto ex = current_;
  try {
    impl_->handler(std::move(req), ex);
  } catch (const std::exception& e) {
    ex->respond({500, "text/plain", std::string("internal error: ") + e.what(), {}});
  }
}

void Session::exchange_done() {
  if (!current_) return;
  current_.reset();
  ending_ = false;
  ++watch_gen_;
  impl_->open.fetch_sub(1);
  if (keep_alive_ && !closed_) {
    do_read();
  } else {
    close();
  }
}

void Session::close() {
  if (closed_) return;
  closed_ = true;
  beast::error_code ec;
  timer_.cancel();
  stream_.socket().shutdown(tcp::socket::shutdown_both, ec);
  stream_.close();
  // A write in flight still reads out_.front(): on_write drops the queue when it completes (aborted).
  if (!writing_) out_.clear();
  if (current_) {
    current_->fire_disconnect();
    current_.reset();
    impl_->open.fetch_sub(1);
  }
}

void Session::watch() {
  const uint64_t gen = watch_gen_;
  stream_.socket().async_wait(
      tcp::socket::wait_read,
      net::bind_executor(stream_.get_executor(),
                         [self = shared_from_this(), gen](beast::error_code ec) { self->on_watch(ec, gen); }));
}

void Session::on_watch(beast::error_code ec, uint64_t gen) {
  if (ec || closed_ || gen != watch_gen_ || !current_ || current_->ended()) return;
  char c;
  const ssize_t n = ::recv(stream_.socket().native_handle(), &c, 1, MSG_PEEK | MSG_DONTWAIT);
  if (n > 0) return;  // a pipelined request: it waits in the socket until this answer is done
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
    watch();
    return;
  }
  close();  // EOF or a reset: the client is gone
}

void do_accept(const std::shared_ptr<Server::Impl>& impl) {
  impl->acceptor->async_accept(net::make_strand(impl->ioc), [impl](beast::error_code ec, tcp::socket socket) {
    if (!impl->acceptor->is_open()) return;
    if (!ec) {
      beast::error_code ignored;
      socket.set_option(tcp::no_delay(true), ignored);
      auto session = std::make_shared<Session>(std::move(socket), impl);
      {
        std::lock_guard lock(impl->sessions_mu);
        impl->sessions.emplace(session->id(), session);
      }
      session->start();
    }
    do_accept(impl);
  });
}

}  // namespace

Server::Server(ServerOptions options, Handler handler) : impl_(std::make_shared<Impl>()) {
  impl_->options = std::move(options);
  impl_->handler = std::move(handler);
}

Server::~Server() { stop(0.0); }

void Server::start() {
  const auto& o = impl_->options;
  const std::string where = o.host + ":" + std::to_string(o.port);
  try {
    const auto address = net::ip::make_address(o.host);
    tcp::endpoint endpoint(address, static_cast<uint16_t>(o.port));
    impl_->acceptor.emplace(net::make_strand(impl_->ioc));
    impl_->acceptor->open(endpoint.protocol());
    impl_->acceptor->set_option(net::socket_base::reuse_address(true));
    impl_->acceptor->bind(endpoint);
    impl_->acceptor->listen(net::socket_base::max_listen_connections);
    impl_->port = impl_->acceptor->local_endpoint().port();
  } catch (const std::exception& e) {
    throw Error("cannot listen on " + where + ": " + e.what());
  }
  impl_->work.emplace(impl_->ioc.get_executor());
  do_accept(impl_);
  const int n = std::max(1, o.threads);
  for (int i = 0; i < n; ++i) impl_->threads.emplace_back([impl = impl_] { impl->ioc.run(); });
}

int Server::port() const { return impl_->port; }

int64_t Server::open_exchanges() const { return impl_->open.load(); }

void Server::stop(double grace_s) {
  if (impl_->threads.empty()) return;
  // No new connection once this has run (accept completions run on the acceptor's strand, after it or before it).
  auto closed = std::make_shared<std::promise<void>>();
  std::future<void> acceptor_closed = closed->get_future();
  net::post(impl_->acceptor->get_executor(), [impl = impl_, closed] {
    beast::error_code ec;
    impl->acceptor->close(ec);
    closed->set_value();
  });
  // Bounded: the strand runs short handlers only; a pool stuck elsewhere is cut short by ioc.stop() below.
  const bool accepting_stopped = acceptor_closed.wait_for(std::chrono::seconds(1)) == std::future_status::ready;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(grace_s);
  while (impl_->open.load() > 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));  // bounded: at most grace_s
  // Close what is still open, each connection on its strand: idle keep-alive connections, connections that never
  // sent a request, answers that did not end within the grace (their handlers see a disconnect). Their pending
  // reads, watches and writes then complete (aborted) and release the sessions, and the pool runs out of work.
  std::vector<std::shared_ptr<Session>> open;
  {
    std::lock_guard lock(impl_->sessions_mu);
    for (const auto& [id, weak] : impl_->sessions)
      if (auto s = weak.lock()) open.push_back(std::move(s));
  }
  for (auto& s : open) net::post(s->executor(), [s] { s->close(); });
  open.clear();
  impl_->work.reset();
  const auto drain_deadline = std::chrono::steady_clock::now() + std::chrono::seconds(1);
  while (!impl_->ioc.stopped() && std::chrono::steady_clock::now() < drain_deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  {
    std::lock_guard lock(impl_->post_mu);
    impl_->stopped = true;
  }
  impl_->ioc.stop();
  for (auto& t : impl_->threads) t.join();
  impl_->threads.clear();
  // What was queued and not run (an Exchange call that came during the stop) runs now, on closed sessions: it only
  // releases what it holds.
  impl_->ioc.restart();
  impl_->ioc.poll();
  if (!accepting_stopped) {
    beast::error_code ec;
    impl_->acceptor->close(ec);  // the pool has ended: no handler can touch it any more
  }
}

}  // namespace tessera::coordinator::http
