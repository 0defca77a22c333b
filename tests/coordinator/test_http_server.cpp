// tests/coordinator/test_http_server.cpp — the HTTP stage (coordinator/http/server.h) in-process, over loopback.
//
// A Server on 127.0.0.1, port 0, with a small handler (/echo answers at once; /stream hands its Exchange to the
// test, which writes the chunks), and a raw POSIX-socket client, so that what is checked is the bytes on the wire:
// keep-alive and pipelining, a chunked stream read chunk by chunk while the handler is still writing, a client
// that hangs up mid-stream (the disconnect callback fires once; the server answers the next client), the framing
// statuses (413, 431, 505, 400, ...) followed by a close, the idle timeout (408), and stop() with connections
// open. Every socket read has a timeout, and every wait is bounded.
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>

#include "coordinator/http/server.h"

namespace tessera::coordinator::http {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// Socket reads give up after this long: a test that would hang fails instead.
constexpr int kRecvTimeoutS = 10;

struct Response {
  int status = 0;
  std::string version;
  std::map<std::string, std::string> headers;  // names lower-cased
  std::string body;

  std::string header(const std::string& name) const {
    auto it = headers.find(name);
    return it == headers.end() ? "" : it->second;
  }
};

// One TCP connection to the server, read with a buffer of what came but was not consumed yet.
class Client {
 public:
  explicit Client(int port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    if (fd_ < 0) throw std::runtime_error("socket: " + std::string(std::strerror(errno)));
    timeval tv{kRecvTimeoutS, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0)
      throw std::runtime_error("connect: " + std::string(std::strerror(errno)));
  }
  ~Client() { close(); }
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  void send(std::string_view bytes) {
    while (!bytes.empty()) {
      const ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) throw std::runtime_error("send: " + std::string(std::strerror(errno)));
      bytes.remove_prefix(static_cast<size_t>(n));
    }
  }

  // The status line and the header of a response; the body is left in the socket.
  Response read_head() {
    Response r;
    const std::string status_line = line();
    const size_t sp = status_line.find(' ');
    if (sp == std::string::npos) throw std::runtime_error("bad status line: " + status_line);
    r.version = status_line.substr(0, sp);
    r.status = std::stoi(status_line.substr(sp + 1, 3));
    for (std::string h = line(); !h.empty(); h = line()) {
      const size_t colon = h.find(':');
      if (colon == std::string::npos) throw std::runtime_error("bad header line: " + h);
      std::string name = h.substr(0, colon);
      std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::tolower(c); });
      r.headers[name] = h.substr(h.find_first_not_of(' ', colon + 1));
    }
    return r;
  }
  // The next chunk of a chunked body; nullopt for the last (empty) chunk.
  std::optional<std::string> next_chunk() {
    const size_t size = std::stoul(line(), nullptr, 16);
    if (size == 0) {
      if (!line().empty()) throw std::runtime_error("trailers after the last chunk");
      return std::nullopt;
    }
    std::string data = take(size);
    if (!line().empty()) throw std::runtime_error("a chunk not followed by CRLF");
    return data;
  }
  // A whole response: Content-Length or chunked.
  Response read_response() {
    Response r = read_head();
    if (r.headers.count("content-length")) {
      r.body = take(std::stoul(r.header("content-length")));
    } else if (r.header("transfer-encoding") == "chunked") {
      while (auto c = next_chunk()) r.body += *c;
    }
    return r;
  }
  // True when the server closes the connection (EOF or a reset) within `timeout`, with nothing more sent.
  bool closed_by_peer(std::chrono::milliseconds timeout) {
    if (!buf_.empty()) return false;
    const auto deadline = Clock::now() + timeout;
    while (Clock::now() < deadline) {
      char c;
      const ssize_t n = ::recv(fd_, &c, 1, MSG_DONTWAIT);
      if (n == 0 || (n < 0 && errno == ECONNRESET)) return true;
      if (n > 0) return false;
      std::this_thread::sleep_for(5ms);
    }
    return false;
  }
  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  void fill() {
    char tmp[16384];
    const ssize_t n = ::recv(fd_, tmp, sizeof tmp, 0);
    if (n == 0) throw std::runtime_error("the server closed the connection");
    if (n < 0) throw std::runtime_error("recv: " + std::string(std::strerror(errno)));
    buf_.append(tmp, static_cast<size_t>(n));
  }
  std::string line() {
    size_t at;
    while ((at = buf_.find("\r\n")) == std::string::npos) fill();
    std::string l = buf_.substr(0, at);
    buf_.erase(0, at + 2);
    return l;
  }
  std::string take(size_t n) {
    while (buf_.size() < n) fill();
    std::string out = buf_.substr(0, n);
    buf_.erase(0, n);
    return out;
  }

  int fd_ = -1;
  std::string buf_;
};

// Exchanges of /stream requests, handed from the io threads to the test; counts disconnect callbacks.
class StreamBox {
 public:
  void put(std::shared_ptr<Exchange> ex) {
    std::lock_guard lock(mu_);
    exchanges_.push_back(std::move(ex));
    cv_.notify_all();
  }
  std::shared_ptr<Exchange> take() {
    std::unique_lock lock(mu_);
    if (!cv_.wait_for(lock, 5s, [&] { return !exchanges_.empty(); })) return nullptr;
    auto ex = exchanges_.front();
    exchanges_.pop_front();
    return ex;
  }
  void disconnected() {
    std::lock_guard lock(mu_);
    ++disconnects_;
    cv_.notify_all();
  }
  bool wait_disconnects(int n) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, 5s, [&] { return disconnects_ >= n; });
  }
  int disconnects() {
    std::lock_guard lock(mu_);
    return disconnects_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<Exchange>> exchanges_;
  int disconnects_ = 0;
};

constexpr int64_t kMaxBody = 1024;

class HttpServer : public ::testing::Test {
 protected:
  void SetUp() override { start(5.0); }
  void TearDown() override {
    if (server_) server_->stop(1.0);
  }
  void start(double idle_timeout_s) {
    ServerOptions o;
    o.host = "127.0.0.1";
    o.port = 0;
    o.threads = 2;
    o.max_body_bytes = kMaxBody;
    o.idle_timeout_s = idle_timeout_s;
    server_ = std::make_unique<Server>(
        o, [this](HttpRequest req, std::shared_ptr<Exchange> ex) { handle(std::move(req), std::move(ex)); });
    server_->start();
    ASSERT_GT(server_->port(), 0);
  }
  void handle(HttpRequest req, std::shared_ptr<Exchange> ex) {
    if (req.error_status != 0) {
      // What the api layer does with a request that could not be read: answer with its status.
      ex->respond({req.error_status, "text/plain", req.error_message, {}});
    } else if (req.path == "/stream") {
      ex->on_disconnect([this] { box_.disconnected(); });
      ex->start_stream(200, "text/event-stream", {{"X-Test", "stream"}});
      box_.put(std::move(ex));
    } else {
      ex->respond({200, "text/plain", req.method + " " + req.path + " " + req.body, {{"X-Test", "echo"}}});
    }
  }
  int port() const { return server_->port(); }
  // Waits (bounded) until no exchange is open.
  bool wait_no_open_exchanges() {
    const auto deadline = Clock::now() + 5s;
    while (server_->open_exchanges() != 0) {
      if (Clock::now() > deadline) return false;
      std::this_thread::sleep_for(2ms);
    }
    return true;
  }

  std::unique_ptr<Server> server_;
  StreamBox box_;
};

std::string post(const std::string& path, const std::string& body, const std::string& extra_headers = "") {
  return "POST " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\n" + extra_headers +
         "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
}

TEST_F(HttpServer, KeepAliveCarriesTwoRequestsOnOneConnection) {
  Client c(port());
  c.send(post("/echo?x=1", "one"));
  Response r = c.read_response();
  EXPECT_EQ(r.version, "HTTP/1.1");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "POST /echo one");  // the query string is not part of the path
  EXPECT_EQ(r.header("connection"), "keep-alive");
  EXPECT_EQ(r.header("content-type"), "text/plain");
  EXPECT_EQ(r.header("x-test"), "echo");
  c.send("GET /again HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
  r = c.read_response();
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "GET /again ");
  EXPECT_FALSE(c.closed_by_peer(50ms));
}

TEST_F(HttpServer, PipelinedRequestsAreAnsweredInOrder) {
  Client c(port());
  c.send(post("/echo", "first") + post("/echo", "second"));
  EXPECT_EQ(c.read_response().body, "POST /echo first");
  EXPECT_EQ(c.read_response().body, "POST /echo second");
}

TEST_F(HttpServer, ConnectionCloseAndHttp10CloseAfterTheAnswer) {
  {
    Client c(port());
    c.send(post("/echo", "x", "Connection: close\r\n"));
    const Response r = c.read_response();
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.header("connection"), "close");
    EXPECT_TRUE(c.closed_by_peer(2s));
  }
  {
    Client c(port());
    c.send("GET /old HTTP/1.0\r\n\r\n");
    const Response r = c.read_response();
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.body, "GET /old ");
    EXPECT_TRUE(c.closed_by_peer(2s));
  }
}

TEST_F(HttpServer, ABodyAtTheLimitIsRead) {
  Client c(port());
  const std::string body(kMaxBody, 'b');
  c.send(post("/echo", body));
  const Response r = c.read_response();
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "POST /echo " + body);
  // A chunked body is decoded.
  c.send("POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n");
  EXPECT_EQ(c.read_response().body, "POST /echo abcde");
}

TEST_F(HttpServer, ChunkedStreamIsReadChunkByChunkWhileTheHandlerWrites) {
  Client c(port());
  c.send("GET /stream HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
  auto ex = box_.take();
  ASSERT_TRUE(ex);
  const Response head = c.read_head();
  EXPECT_EQ(head.status, 200);
  EXPECT_EQ(head.header("transfer-encoding"), "chunked");
  EXPECT_EQ(head.header("content-type"), "text/event-stream");
  EXPECT_EQ(head.header("x-test"), "stream");
  EXPECT_EQ(head.headers.count("content-length"), 0u);
  // Each chunk reaches the client before the next is written: nothing waits for the end of the answer.
  for (int i = 0; i < 3; ++i) {
    const std::string event = "data: " + std::to_string(i) + "\n\n";
    ex->write(event);
    EXPECT_EQ(c.next_chunk(), event);
  }
  ex->write("");  // an empty write is not the last chunk
  ex->write("data: [DONE]\n\n");
  EXPECT_EQ(c.next_chunk(), "data: [DONE]\n\n");
  EXPECT_EQ(server_->open_exchanges(), 1);
  ex->end();
  EXPECT_EQ(c.next_chunk(), std::nullopt);
  ex->write("after the end");                        // ignored
  ex->respond({500, "text/plain", "too late", {}});  // ignored
  // The connection is kept for the next request.
  c.send(post("/echo", "next"));
  EXPECT_EQ(c.read_response().body, "POST /echo next");
  EXPECT_TRUE(wait_no_open_exchanges());
  EXPECT_EQ(box_.disconnects(), 0);  // an answer that completed is not a disconnect
  EXPECT_FALSE(ex->disconnected());
}

TEST_F(HttpServer, AClientThatHangsUpMidStreamIsSeenAndTheServerStaysUp) {
  std::shared_ptr<Exchange> ex;
  {
    Client c(port());
    c.send("GET /stream HTTP/1.1\r\n\r\n");
    ex = box_.take();
    ASSERT_TRUE(ex);
    ex->write("data: 0\n\n");
    EXPECT_EQ(c.read_head().status, 200);
    EXPECT_EQ(c.next_chunk(), "data: 0\n\n");
  }  // the client closes its socket here
  ASSERT_TRUE(box_.wait_disconnects(1)) << "the handler never heard of the disconnect";
  EXPECT_TRUE(ex->disconnected());
  EXPECT_TRUE(wait_no_open_exchanges());
  // Writing on: dropped, no crash, and the callback does not fire twice.
  for (int i = 0; i < 100; ++i) ex->write(std::string(4096, 'x'));
  ex->end();
  // A callback registered after the client left runs at once.
  std::atomic<bool> late{false};
  ex->on_disconnect([&late] { late = true; });
  for (int i = 0; i < 500 && !late; ++i) std::this_thread::sleep_for(2ms);
  EXPECT_TRUE(late);
  // The next client is answered.
  Client next(port());
  next.send(post("/echo", "still here"));
  EXPECT_EQ(next.read_response().body, "POST /echo still here");
  EXPECT_EQ(box_.disconnects(), 1);
}

TEST_F(HttpServer, AClientThatHangsUpBeforeTheFirstChunkIsSeen) {
  {
    Client c(port());
    c.send("GET /stream HTTP/1.1\r\n\r\n");
    ASSERT_TRUE(box_.take());
  }
  EXPECT_TRUE(box_.wait_disconnects(1));
  EXPECT_TRUE(wait_no_open_exchanges());
}

struct FramingCase {
  const char* name;
  std::string bytes;
  int status;
};

TEST_F(HttpServer, BadFramingGetsItsStatusAndThenAClose) {
  const std::string head = "POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\n";
  const std::string big_body(2 * kMaxBody, 'x');
  const FramingCase cases[] = {
      {"Content-Length over the limit", head + "Content-Length: 1025\r\n\r\n", 413},  // refused before the body
      {"chunked body over the limit", head + "Transfer-Encoding: chunked\r\n\r\n800\r\n" + big_body + "\r\n0\r\n\r\n",
       413},
      {"a 70 KiB header", head + "X-Big: " + std::string(70 << 10, 'a') + "\r\nContent-Length: 0\r\n\r\n", 431},
      {"HTTP/2.0", "POST /echo HTTP/2.0\r\nHost: 127.0.0.1\r\nContent-Length: 2\r\n\r\nhi", 505},
      {"conflicting Content-Length", head + "Content-Length: 2\r\nContent-Length: 3\r\n\r\nhi", 400},
      {"Content-Length and chunked",
       head + "Content-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n", 400},
      {"a header line without a colon", head + "Broken header\r\nContent-Length: 2\r\n\r\nhi", 400},
      {"a bad chunk size", head + "Transfer-Encoding: chunked\r\n\r\nzz\r\nhi\r\n0\r\n\r\n", 400},
      {"Transfer-Encoding gzip", head + "Transfer-Encoding: gzip, chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n", 501},
      {"Content-Encoding gzip", head + "Content-Encoding: gzip\r\nContent-Length: 2\r\n\r\nhi", 415},
  };
  for (const FramingCase& fc : cases) {
    SCOPED_TRACE(fc.name);
    Client c(port());
    c.send(fc.bytes);
    const Response r = c.read_response();
    EXPECT_EQ(r.status, fc.status) << r.body;
    EXPECT_FALSE(r.body.empty());  // the handler got the reader's message
    EXPECT_EQ(r.header("connection"), "close");
    EXPECT_TRUE(c.closed_by_peer(2s)) << "the connection stayed open after the error";
  }
  // None of that hurt the server.
  Client c(port());
  c.send(post("/echo", "fine"));
  EXPECT_EQ(c.read_response().status, 200);
  EXPECT_TRUE(wait_no_open_exchanges());
}

TEST_F(HttpServer, ARequestThatDoesNotArriveInTimeGets408AndAnIdleConnectionIsClosed) {
  server_->stop(0.0);
  start(0.3);
  Client partial(port());
  partial.send("POST /echo HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc");  // 7 bytes short, forever
  Client idle(port());                                                   // sends nothing at all
  const Response r = partial.read_response();
  EXPECT_EQ(r.status, 408);
  EXPECT_TRUE(partial.closed_by_peer(2s));
  EXPECT_TRUE(idle.closed_by_peer(2s)) << "an idle connection outlived idle_timeout_s";
}

TEST_F(HttpServer, StopWithConnectionsOpenReturnsAndClosesThem) {
  Client idle_keep_alive(port());  // answered once, then idle on keep-alive
  idle_keep_alive.send(post("/echo", "x"));
  EXPECT_EQ(idle_keep_alive.read_response().status, 200);
  Client silent(port());     // connected, never sent a byte
  Client streaming(port());  // an answer in progress that the handler never ends
  streaming.send("GET /stream HTTP/1.1\r\n\r\n");
  auto ex = box_.take();
  ASSERT_TRUE(ex);
  ex->write("data: 0\n\n");
  EXPECT_EQ(streaming.read_head().status, 200);
  EXPECT_EQ(streaming.next_chunk(), "data: 0\n\n");

  const int old_port = port();
  const auto t0 = Clock::now();
  server_->stop(0.2);
  const double took_s = std::chrono::duration<double>(Clock::now() - t0).count();
  EXPECT_LT(took_s, 3.0) << "stop() must be bounded by its grace period";
  EXPECT_TRUE(idle_keep_alive.closed_by_peer(2s));
  EXPECT_TRUE(silent.closed_by_peer(2s));
  EXPECT_TRUE(streaming.closed_by_peer(2s));
  // The handler's Exchange outlives the server: using it is harmless.
  ex->write("data: 1\n\n");
  ex->end();
  server_->stop(0.0);  // a second stop is a no-op
  server_.reset();
  ex.reset();
  // Nothing listens any more.
  EXPECT_THROW(Client{old_port}, std::runtime_error);
}

TEST(HttpServerStart, ABusyPortIsAnErrorNamingIt) {
  Server first({"127.0.0.1", 0, 1, kMaxBody, 5.0}, [](HttpRequest, std::shared_ptr<Exchange>) {});
  first.start();
  Server second({"127.0.0.1", first.port(), 1, kMaxBody, 5.0}, [](HttpRequest, std::shared_ptr<Exchange>) {});
  try {
    second.start();
    ADD_FAILURE() << "bound a port already in use";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("127.0.0.1:" + std::to_string(first.port())), std::string::npos) << e.what();
  }
  first.stop(0.0);
}

}  // namespace
}  // namespace tessera::coordinator::http
