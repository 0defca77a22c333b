// app/launch.cpp — see launch.h. The signals are blocked before the fork and read with sigtimedwait, so none is
// lost between the fork and the wait and no handler runs; the child gets its own process group (a terminal's
// Ctrl-C reaches `launch` only, which forwards it as the drain signal) and the default signal mask back.
#include "app/launch.h"

#include <spdlog/spdlog.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <ctime>

#include "common/check.h"

namespace tessera::app {
namespace {

int parse_signal(std::string name) {
  if (name.rfind("SIG", 0) == 0) name = name.substr(3);
  if (name == "USR1") return SIGUSR1;
  if (name == "USR2") return SIGUSR2;
  if (name == "TERM") return SIGTERM;
  if (name == "INT") return SIGINT;
  throw Error("launch --signal: must be one of USR1, USR2, TERM, INT; got '" + name + "'");
}

int exit_code(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 1;
}

}  // namespace

int run_launch(const std::vector<std::string>& command, const std::string& signal_name) {
  if (command.empty()) throw Error("launch: no command given (tessera launch -- mpirun -np 4 tessera serve ...)");
  const int drain_signal = parse_signal(signal_name);

  sigset_t watched, old;
  sigemptyset(&watched);
  for (int s : {SIGTERM, SIGINT, SIGHUP, SIGCHLD}) sigaddset(&watched, s);
  if (sigprocmask(SIG_BLOCK, &watched, &old) != 0) throw Error("launch: sigprocmask failed");

  std::vector<char*> argv;
  for (const std::string& a : command) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  const pid_t child = ::fork();
  if (child < 0) throw Error(std::string("launch: fork failed: ") + std::strerror(errno));
  if (child == 0) {
    ::setpgid(0, 0);
    sigprocmask(SIG_SETMASK, &old, nullptr);
    ::execvp(argv[0], argv.data());
    std::fprintf(stderr, "tessera launch: cannot run '%s': %s\n", argv[0], std::strerror(errno));
    ::_exit(127);
  }
  spdlog::info("launch: pid {} runs '{}'; SIGTERM/SIGINT drain it (as SIG{}), a second one aborts it", child,
               command.front(), signal_name.rfind("SIG", 0) == 0 ? signal_name.substr(3) : signal_name);

  int signals_seen = 0;
  for (;;) {
    // Reap whatever has exited: our child (then return its code) and, as PID 1, any orphan.
    for (;;) {
      int status = 0;
      const pid_t done = ::waitpid(-1, &status, WNOHANG);
      if (done <= 0) break;
      if (done == child) {
        const int code = exit_code(status);
        spdlog::info("launch: '{}' exited with code {}", command.front(), code);
        return code;
      }
    }
    siginfo_t info{};
    const timespec tick{1, 0};  // a backstop: a SIGCHLD merged with another one is still seen within a second
    const int sig = sigtimedwait(&watched, &info, &tick);
    if (sig < 0 || sig == SIGCHLD) continue;
    ++signals_seen;
    const int forward = signals_seen == 1 ? drain_signal : SIGTERM;
    spdlog::info("launch: signal {} → sending {} to pid {} ({})", sig, forward, child,
                 signals_seen == 1 ? "drain" : "abort");
    ::kill(child, forward);
  }
}

}  // namespace tessera::app
