// parallel/lifeline.cpp — see lifeline.h. POSIX sockets and poll(); one watcher thread per process.
#include "parallel/lifeline.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <random>
#include <sstream>
#include <thread>
#include <vector>

namespace tessera::parallel {
namespace {

constexpr char kGoodbye = 'B', kAck = 'A';
constexpr int kHandshakeTimeoutMs = 2000;
constexpr int kBroadcastBytes = 4096;

struct Peer {
  int fd = -1;
  int world_rank = 0;
  bool left = false;  // said goodbye
};

struct Handshake {  // what a worker sends after connecting (no implicit padding: every byte is set)
  uint64_t token;
  int32_t world_rank;
  int32_t reserved;
};
static_assert(sizeof(Handshake) == 16);

std::atomic<bool> g_dead{false};
std::mutex g_message_mu;  // guards g_message
std::string g_message;
std::mutex g_callback_mu;  // guards g_callback; held while it runs
std::function<void(const std::string&)> g_callback;

// The process's lifelines: set up by start_lifelines, owned by the watcher thread until close_lifelines joins it.
struct State {
  int world_rank = 0, world_size = 1;
  int listen_fd = -1;  // coordinator only
  uint64_t token = 0;
  std::vector<Peer> peers;
  int wake[2] = {-1, -1};
  std::thread watcher;
  bool started = false, closed = false;
};
State g_state;
std::mutex g_state_mu;  // serializes start/close

std::string describe_rank(int world_rank) {
  if (world_rank == 0) return "the coordinator (world rank 0)";
  return "world rank " + std::to_string(world_rank) + " (tensor-parallel rank " + std::to_string(world_rank - 1) + ")";
}

void set_timeout(int fd, int ms) {
  timeval tv{};
  tv.tv_sec = ms / 1000;
  tv.tv_usec = (ms % 1000) * 1000;
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

// Keepalive probes notice a node that vanished without closing anything (power, network) in about 11 s.
void keep_alive(int fd) {
  int on = 1, idle = 5, interval = 2, count = 3;
  setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on);
  setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
  setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &interval, sizeof interval);
  setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &count, sizeof count);
}

void report_death(const Peer& peer, const char* how) {
  std::string message = describe_rank(peer.world_rank) + " died (" + how + ")";
  {
    std::lock_guard lock(g_message_mu);
    if (g_dead.load()) return;
    g_message = message;
    g_dead.store(true);
  }
  spdlog::error("{}", message);
  std::lock_guard lock(g_callback_mu);
  if (g_callback) g_callback(message);
}

// Coordinator: one connection on the listening socket; kept when it proves the token.
void accept_peer(State& s) {
  const int fd = ::accept4(s.listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
  if (fd < 0) return;
  set_timeout(fd, kHandshakeTimeoutMs);
  Handshake h{};
  const ssize_t n = ::recv(fd, &h, sizeof h, MSG_WAITALL);
  bool known = false;
  for (const Peer& p : s.peers) known = known || p.world_rank == h.world_rank;
  if (n != static_cast<ssize_t>(sizeof h) || h.token != s.token || h.world_rank < 1 || h.world_rank >= s.world_size ||
      known || ::send(fd, &kAck, 1, MSG_NOSIGNAL) != 1) {
    ::close(fd);  // not one of ours (or a duplicate)
    return;
  }
  set_timeout(fd, 0);
  keep_alive(fd);
  s.peers.push_back(Peer{fd, h.world_rank, false});
}

void watch(State& s) {
  std::vector<pollfd> fds;
  for (;;) {
    fds.clear();
    fds.push_back({s.wake[0], POLLIN, 0});
    if (s.listen_fd >= 0) fds.push_back({s.listen_fd, POLLIN, 0});
    for (const Peer& p : s.peers)
      if (!p.left) fds.push_back({p.fd, POLLIN, 0});
    if (::poll(fds.data(), fds.size(), -1) < 0) {
      if (errno == EINTR) continue;
      spdlog::warn("lifeline watcher: poll failed ({}); rank deaths are noticed by the step timeout only",
                   std::strerror(errno));
      return;
    }
    if (fds[0].revents != 0) return;  // close_lifelines
    size_t i = 1;
    if (s.listen_fd >= 0 && fds[i++].revents != 0) accept_peer(s);  // may grow s.peers
    for (; i < fds.size(); ++i) {
      if (fds[i].revents == 0) continue;
      Peer& p = *std::find_if(s.peers.begin(), s.peers.end(), [&](const Peer& q) { return q.fd == fds[i].fd; });
      char b = 0;
      const ssize_t n = ::recv(p.fd, &b, 1, MSG_DONTWAIT);
      if (n == 1 && b == kGoodbye) {
        p.left = true;
      } else if (n == 0) {
        report_death(p, "its lifeline closed without a goodbye");
        return;
      } else if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        report_death(p, std::strerror(errno));
        return;
      }
    }
  }
}

// The coordinator's IPv4 addresses, loopback first.
std::vector<std::string> local_addresses() {
  std::vector<std::string> loop, other;
  ifaddrs* list = nullptr;
  if (::getifaddrs(&list) != 0) return {"127.0.0.1"};
  for (ifaddrs* a = list; a; a = a->ifa_next) {
    if (!a->ifa_addr || a->ifa_addr->sa_family != AF_INET || !(a->ifa_flags & IFF_UP)) continue;
    char text[INET_ADDRSTRLEN] = {};
    ::inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(a->ifa_addr)->sin_addr, text, sizeof text);
    ((a->ifa_flags & IFF_LOOPBACK) ? loop : other).emplace_back(text);
  }
  ::freeifaddrs(list);
  loop.insert(loop.end(), other.begin(), other.end());
  return loop;
}

std::string host_name() {
  char name[256] = {};
  ::gethostname(name, sizeof name - 1);
  return name;
}

// Worker: a connected, acknowledged socket to the coordinator at `address`:`port`, or -1.
int connect_to(const std::string& address, int port, const Handshake& h) {
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(static_cast<uint16_t>(port));
  if (::inet_pton(AF_INET, address.c_str(), &sa.sin_addr) != 1) return -1;
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return -1;
  bool ok = false;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0 || errno == EINPROGRESS) {
    pollfd p{fd, POLLOUT, 0};
    int err = 0;
    socklen_t len = sizeof err;
    ok = ::poll(&p, 1, kHandshakeTimeoutMs) == 1 && ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0;
  }
  if (ok) {
    ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    set_timeout(fd, kHandshakeTimeoutMs);
    char ack = 0;
    ok = ::send(fd, &h, sizeof h, MSG_NOSIGNAL) == static_cast<ssize_t>(sizeof h) &&
         ::recv(fd, &ack, 1, MSG_WAITALL) == 1 && ack == kAck;
  }
  if (!ok) {
    ::close(fd);
    return -1;
  }
  set_timeout(fd, 0);
  keep_alive(fd);
  return fd;
}

int listen_any() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_ANY);
  sa.sin_port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0 || ::listen(fd, 64) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

int bound_port(int fd) {
  sockaddr_in sa{};
  socklen_t len = sizeof sa;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len) != 0) return 0;
  return ntohs(sa.sin_port);
}

}  // namespace

void start_lifelines(MPI_Comm world, int world_rank, int world_size) {
  std::lock_guard lock(g_state_mu);
  State& s = g_state;
  if (world_size < 2 || s.started) return;
  s.world_rank = world_rank;
  s.world_size = world_size;

  // The coordinator's offer: "port token hostname address...". Port 0: no lifelines (it could not listen).
  char offer[kBroadcastBytes] = {};
  if (world_rank == 0) {
    s.listen_fd = listen_any();
    const int port = s.listen_fd >= 0 ? bound_port(s.listen_fd) : 0;
    if (port == 0) {
      spdlog::warn("lifeline: cannot listen on a TCP port ({}); rank deaths are noticed by the step timeout only",
                   std::strerror(errno));
      if (s.listen_fd >= 0) ::close(s.listen_fd);
      s.listen_fd = -1;
    }
    std::random_device rd;
    s.token = (uint64_t{rd()} << 32) ^ rd();
    std::ostringstream os;
    os << port << ' ' << s.token << ' ' << host_name();
    for (const std::string& a : local_addresses()) os << ' ' << a;
    std::strncpy(offer, os.str().c_str(), sizeof offer - 1);
  }
  MPI_Bcast(offer, sizeof offer, MPI_CHAR, 0, world);

  if (world_rank != 0) {
    std::istringstream is(offer);
    int port = 0;
    std::string host, address;
    is >> port >> s.token >> host;
    if (port == 0) return;
    const bool same_host = host == host_name();
    const Handshake h{s.token, world_rank, 0};
    int fd = -1;
    std::string tried;
    while (fd < 0 && is >> address) {
      if (address.rfind("127.", 0) == 0 && !same_host) continue;
      fd = connect_to(address, port, h);
      tried += (tried.empty() ? "" : ", ") + address;
    }
    if (fd < 0) {
      spdlog::warn(
          "lifeline: world rank {} reached the coordinator at none of [{}] port {}; its death is noticed "
          "by the step timeout only",
          world_rank, tried, port);
      return;
    }
    s.peers.push_back(Peer{fd, 0, false});
  }
  if (::pipe2(s.wake, O_CLOEXEC) != 0) return;
  s.started = true;
  s.watcher = std::thread([&s] { watch(s); });
}

void close_lifelines() {
  std::lock_guard lock(g_state_mu);
  State& s = g_state;
  if (!s.started || s.closed) return;
  s.closed = true;
  const char b = 1;
  if (::write(s.wake[1], &b, 1) != 1) spdlog::warn("lifeline: cannot wake the watcher");
  s.watcher.join();
  // Goodbye, then no more writes; the sockets stay open until exit so the byte is not lost to a reset.
  for (Peer& p : s.peers) {
    ::send(p.fd, &kGoodbye, 1, MSG_NOSIGNAL | MSG_DONTWAIT);
    ::shutdown(p.fd, SHUT_WR);
  }
  if (s.listen_fd >= 0) ::close(s.listen_fd);
  s.listen_fd = -1;
}

std::string dead_peer() {
  if (!g_dead.load(std::memory_order_acquire)) return {};
  std::lock_guard lock(g_message_mu);
  return g_message;
}

void on_peer_death(std::function<void(const std::string&)> callback) {
  std::lock_guard lock(g_callback_mu);
  g_callback = std::move(callback);
}

}  // namespace tessera::parallel
