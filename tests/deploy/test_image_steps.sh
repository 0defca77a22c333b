#!/usr/bin/env bash
# Slow test: the container images' runtime stage (deploy/docker), really run, without a container runtime.
#   bash tests/deploy/test_image_steps.sh [build dir]      (root; scripts/test.sh runs it with TESSERA_SLOW=1)
# The build dir (default: scripts/env.sh's, $TESSERA_BUILD_DIR or <repo>/build) must be configured from this tree and
# have `tessera` built: its `cmake --install` tree is what the images' build stage copies out. Steps:
#   1. a clean Debian 12 root: debootstrap --variant=minbase (cached as a tarball in $TESSERA_CACHE/deploy), with
#      /usr/sbin/policy-rc.d as Debian's container images have it (package installs start no services);
#   2. deploy/docker/build-install.sh cpu --simulate: the build stage's package list resolves on bookworm;
#   3. the runtime stage, in the Dockerfile's order: deploy/docker/runtime-install.sh cpu, the install tree into
#      /opt/tessera (DESTDIR=<root> cmake --install <build dir> --prefix /opt/tessera), the entrypoint into
#      /usr/local/bin/tessera-entrypoint; every later command runs with exactly Dockerfile.cpu's runtime ENV lines;
#   4. ldd /opt/tessera/bin/tessera in the root: nothing "not found"; the OpenMP OpenBLAS;
#   5. tessera-entrypoint --version; then as the non-root user tessera: `tessera-entrypoint serve --model default`
#      with an empty model volume, so the entrypoint fetches the model (TESSERA_IMAGE_TEST_FETCH=0: the host's copy is
#      put there instead), /ready, one /v1/completions (200 with text), SIGTERM, exit 0;
#   6. as root: tessera-entrypoint mpirun -np 2 tessera serve (Open MPI from the runtime packages), the mca-params
#      file's odls_base_sigkill_timeout and the entrypoint's one derived from the drain timeout, one completion,
#      SIGTERM to the entrypoint (forwarded to world rank 0), exit 0;
#   7. sshd -t, then sshd -De on a loopback port: mpirun over ssh to a second "host" (127.0.0.2), the multi-node
#      launchers' way, serving one completion from a rank started by sshd;
#   8. the CUDA backend (when the install tree has libtessera_cuda.so, or TESSERA_CUDA_PLUGIN names one): its ldd in
#      the CPU runtime lacks only the CUDA runtime, cuBLAS(Lt) and NCCL — what runtime-install.sh cuda adds — and with
#      the host's copies of those (TESSERA_CUDA_LIBS, default: where the host's ldd finds them) it loads: `--backend
#      cuda` gets as far as asking for a GPU. TESSERA_IMAGE_TEST_CUDA=1 runs runtime-install.sh cuda (NVIDIA's
#      repository must be reachable) and checks the plugin's ldd against what it installed.
# Mounts (proc, sys, a tmpfs /dev/shm, devpts) and processes in the root are undone on every exit path; the root is
# deleted only when nothing is mounted in it. TESSERA_IMAGE_TEST_KEEP=1 keeps it (printed at the end).
# Networks whose proxy re-signs TLS: TESSERA_IMAGE_TEST_CA_BUNDLE (default: the host's $SSL_CERT_FILE, when set) is
# copied into the root and named to pip and curl there (PIP_CERT, SSL_CERT_FILE, CURL_CA_BUNDLE), as `docker build
# --build-arg`/`docker run -e` would on such a network; the root's own trust store is left as installed.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/../../scripts/env.sh"  # repo_root, TESSERA_CACHE, build_dir
build_dir="$(cd "${1:-$build_dir}" && pwd)"
mirror="${TESSERA_IMAGE_TEST_MIRROR:-http://deb.debian.org/debian}"
dockerfile="$repo_root/deploy/docker/Dockerfile.cpu"
model_name=SmolLM2-135M-Instruct.Q4_1.gguf
t_start=$SECONDS

say() { echo "== [$((SECONDS - t_start))s] $*"; }
die() {
  echo "test_image_steps: FAIL: $*" >&2
  exit 1
}
[[ $(id -u) -eq 0 ]] || die "needs root (debootstrap, chroot, mount)"
for t in debootstrap chroot mount umount python3 curl; do command -v "$t" >/dev/null || die "$t not found"; done
[[ -x "$build_dir/tessera" ]] || die "$build_dir/tessera not built (BUILD_TARGETS=tessera bash scripts/build.sh)"
grep -q 'install(TARGETS tessera' "$repo_root/app/CMakeLists.txt" || die "no install rules in this tree"

work="$(mktemp -d "${TMPDIR:-/var/tmp}/tessera-image-test.XXXXXX")"
root="$work/root"
mounts=()      # what we mounted, in order
pids=()        # background processes we started
current_log="" # the log of the server under test, shown on failure
cleanup() {
  local rc=$? p d
  set +e
  if ((rc != 0)) && [[ -n "$current_log" && -f "$current_log" ]]; then
    echo "--- last lines of $current_log" >&2
    tail -n 25 "$current_log" >&2
  fi
  for p in "${pids[@]}"; do  # still this shell's child (a reaped pid may belong to someone else by now)
    [[ "$(sed -n 's/^PPid:[[:space:]]*//p' "/proc/$p/status" 2>/dev/null)" == "$$" ]] || continue
    { kill -KILL "$p" && wait "$p"; } 2>/dev/null
  done
  # Anything else running inside the root (ranks, orted, sshd sessions): by process id, found by its root dir.
  for d in /proc/[0-9]*; do
    [[ "$(readlink "$d/root" 2>/dev/null)" == "$root" ]] && kill -KILL "${d#/proc/}" 2>/dev/null
  done
  sleep 0.2
  for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do
    umount "${mounts[i]}" 2>/dev/null || umount -l "${mounts[i]}" 2>/dev/null
  done
  if grep -qF " $work/" /proc/self/mounts; then
    echo "test_image_steps: still mounted under $work, not deleting it:" >&2
    grep -F " $work/" /proc/self/mounts >&2
  elif [[ "${TESSERA_IMAGE_TEST_KEEP:-0}" == 1 ]]; then
    echo "test_image_steps: kept $root" >&2
  else
    rm -rf --one-file-system "$work"
  fi
  ((rc == 0)) && echo "test_image_steps: PASS ($((SECONDS - t_start)) s)" || echo "test_image_steps: FAIL (rc $rc)" >&2
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# Commands in the root: as a Dockerfile RUN before any ENV (build steps), or with the runtime stage's ENV lines.
ca_bundle="${TESSERA_IMAGE_TEST_CA_BUNDLE-${SSL_CERT_FILE:-}}"
net_env=()
if [[ -n "$ca_bundle" ]]; then
  [[ -f "$ca_bundle" ]] || die "no CA bundle $ca_bundle (TESSERA_IMAGE_TEST_CA_BUNDLE)"
  net_env=(PIP_CERT=/etc/tessera-test-ca.crt SSL_CERT_FILE=/etc/tessera-test-ca.crt CURL_CA_BUNDLE=/etc/tessera-test-ca.crt)
fi
build_env=(PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root "${net_env[@]}")
mapfile -t image_env < <(sed -n '/^FROM .* AS runtime/,$ s/^ENV \([A-Za-z_][A-Za-z0-9_]*=[^ ]*\)$/\1/p' "$dockerfile")
((${#image_env[@]} >= 2)) || die "could not read the ENV lines of $dockerfile's runtime stage"
image_env+=("${net_env[@]}")
in_build() { chroot "$root" /usr/bin/env -i "${build_env[@]}" "$@"; }
as_root() { chroot "$root" /usr/bin/env -i HOME=/root "${image_env[@]}" "$@"; }
as_tessera() { chroot --userspec=1000:1000 "$root" /usr/bin/env -i HOME=/var/lib/tessera "${image_env[@]}" "$@"; }
# For `bg_as_... &`: exec, so that $! is the command itself (chroot, env and the entrypoint all exec), not a subshell.
bg_as_root() { exec chroot "$root" /usr/bin/env -i HOME=/root "${image_env[@]}" "$@"; }
bg_as_tessera() { exec chroot --userspec=1000:1000 "$root" /usr/bin/env -i HOME=/var/lib/tessera "${image_env[@]}" "$@"; }

# Waits for /ready on a port while a process lives; then one completion, checked: 200 and some text.
wait_ready() {
  local port="$1" pid="$2" limit="$3" t0=$SECONDS
  until curl -sf "http://127.0.0.1:$port/ready" >/dev/null 2>&1; do
    kill -0 "$pid" 2>/dev/null || die "the server (pid $pid) exited before /ready"
    ((SECONDS - t0 < limit)) || die "no /ready on port $port within $limit s"
    sleep 0.5
  done
  echo "ready after $((SECONDS - t0)) s"
}
completion() {
  local port="$1" out code
  out="$(mktemp)"
  code="$(curl -sS -o "$out" -w '%{http_code}' "http://127.0.0.1:$port/v1/completions" -H 'Content-Type: application/json' \
    -d '{"model": "SmolLM2-135M-Instruct.Q4_1", "prompt": "The capital of France is", "max_tokens": 8, "temperature": 0}')"
  [[ "$code" == 200 ]] || die "POST /v1/completions on $port: HTTP $code: $(cat "$out")"
  python3 - "$out" <<'EOF' || die "POST /v1/completions on $port: no text in $(cat "$out")"
import json, sys
r = json.load(open(sys.argv[1]))
text = r["choices"][0]["text"]
assert text.strip(), r
print(f"200, text {text!r}")
EOF
  rm -f "$out"
}
# SIGTERM to a pid, then its exit status within a bound.
stop_and_wait() {
  local pid="$1" limit="$2" t0=$SECONDS rc
  kill -TERM "$pid"
  while kill -0 "$pid" 2>/dev/null; do
    ((SECONDS - t0 < limit)) || die "pid $pid still running $limit s after SIGTERM"
    sleep 0.2
  done
  set +e
  wait "$pid"
  rc=$?
  set -e
  echo "exit $rc, $((SECONDS - t0)) s after SIGTERM"
  return "$rc"
}

# --- 1. the Debian 12 root --------------------------------------------------------------------------------------
tarball="$TESSERA_CACHE/deploy/debian-bookworm-minbase.tar.gz"
if [[ ! -f "$tarball" ]]; then
  say "debootstrap --variant=minbase bookworm ($mirror), cached as $tarball"
  mkdir -p "$(dirname "$tarball")" "$work/boot"
  debootstrap --variant=minbase bookworm "$work/boot" "$mirror" >"$work/debootstrap.log" 2>&1 || {
    tail -20 "$work/debootstrap.log" >&2
    die "debootstrap failed"
  }
  tar -C "$work/boot" --numeric-owner -czf "$tarball.tmp" .
  mv "$tarball.tmp" "$tarball"
  rm -rf --one-file-system "${work:?}/boot"
fi
say "root from $tarball ($(du -h "$tarball" | cut -f1))"
mkdir -p "$root"
tar -C "$root" --numeric-owner -xzf "$tarball"
printf '#!/bin/sh\n# as in Debian'"'"'s container images: no service starts during package installs\nexit 101\n' \
  >"$root/usr/sbin/policy-rc.d"
chmod 0755 "$root/usr/sbin/policy-rc.d"
cp /etc/resolv.conf "$root/etc/resolv.conf"
[[ -n "$ca_bundle" ]] && cp "$ca_bundle" "$root/etc/tessera-test-ca.crt"
mount -t proc proc "$root/proc" && mounts+=("$root/proc")
mount -t sysfs -o ro sysfs "$root/sys" && mounts+=("$root/sys")
mkdir -p "$root/dev/shm"
mount -t tmpfs -o mode=1777,size=1g shm "$root/dev/shm" && mounts+=("$root/dev/shm")
mkdir -p "$root/dev/pts"
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts "$root/dev/pts" && mounts+=("$root/dev/pts")
ln -sfn pts/ptmx "$root/dev/ptmx"  # the root's own pty instance, as a container's /dev has it
rm -f "$root"/var/cache/apt/archives/*.deb  # debootstrap's downloads; an image starts without them
[[ -c "$root/dev/null" ]] || die "the root has no /dev/null"
base_size="$(du -sh --one-file-system "$root" | cut -f1)"

# --- 2. the build stage's packages -----------------------------------------------------------------------------
say "build-install.sh cpu --simulate"
cp "$repo_root/deploy/docker/build-install.sh" "$root/tmp/build-install.sh"
in_build bash /tmp/build-install.sh cpu --simulate
rm "$root/tmp/build-install.sh"

# --- 3. the runtime stage ----------------------------------------------------------------------------------------
say "runtime-install.sh cpu"
t0=$SECONDS
cp "$repo_root/deploy/docker/runtime-install.sh" "$root/tmp/runtime-install.sh"
in_build bash /tmp/runtime-install.sh cpu
rm "$root/tmp/runtime-install.sh"
echo "runtime-install took $((SECONDS - t0)) s"
say "cmake --install $build_dir --prefix /opt/tessera (DESTDIR=$root)"
DESTDIR="$root" cmake --install "$build_dir" --prefix /opt/tessera | sed 's/^/  /'
plugin_installed=0
if [[ -f "$root/opt/tessera/bin/libtessera_cuda.so" ]]; then
  plugin_installed=1
  # The CPU image's build has no CUDA backend: set the plugin aside for step 8.
  mv "$root/opt/tessera/bin/libtessera_cuda.so" "$work/libtessera_cuda.so"
fi
install -m 0755 "$repo_root/deploy/docker/entrypoint.sh" "$root/usr/local/bin/tessera-entrypoint"
runtime_size="$(du -sh --one-file-system "$root" | cut -f1)"
tree_size="$(du -sh "$root/opt/tessera" | cut -f1)"
echo "root: $base_size debootstrapped, $runtime_size with the runtime stage; /opt/tessera $tree_size"

# --- 4. ldd ---------------------------------------------------------------------------------------------------------
say "ldd /opt/tessera/bin/tessera"
ldd_out="$(as_root ldd /opt/tessera/bin/tessera)"
echo "$ldd_out" | sed 's/^/  /'
! grep -q 'not found' <<<"$ldd_out" || die "ldd: libraries not found in the runtime root"
grep -q 'libopenblas.so.0 => /usr/lib/x86_64-linux-gnu/openblas-openmp/' <<<"$ldd_out" ||
  die "ldd: not the OpenMP OpenBLAS"

# --- 5. the entrypoint: --version, then serve as the non-root user -----------------------------------------------
say "tessera-entrypoint --version"
version="$(as_root tessera-entrypoint --version)"
echo "  $version"
[[ "$version" == "tessera "* ]] || die "--version printed: $version"

models="$root/var/lib/tessera/models"
[[ -z "$(ls -A "$models")" ]] || die "the image's model directory is not empty"
if [[ "${TESSERA_IMAGE_TEST_FETCH:-1}" == 1 ]]; then
  fetch_note="fetched by the entrypoint at start"
else
  model_src="${TESSERA_DEFAULT_MODEL:-$TESSERA_CACHE/models/$model_name}"
  [[ -f "$model_src" ]] || die "no model at $model_src (TESSERA_DEFAULT_MODEL)"
  cp "$model_src" "$models/$model_name"
  chown 1000:0 "$models/$model_name"
  fetch_note="copied from $model_src"
fi
port="$(free_port)"
say "as uid 1000: tessera-entrypoint serve --model default --port $port (model $fetch_note)"
current_log="$work/serve.log"
bg_as_tessera tessera-entrypoint serve --model default --host 127.0.0.1 --port "$port" >"$current_log" 2>&1 &
serve_pid=$!
pids+=("$serve_pid")
wait_ready "$port" "$serve_pid" 600
[[ -f "$models/$model_name" ]] || die "serve is ready but $models/$model_name is missing"
[[ "$(stat -c %u "$models/$model_name")" == 1000 ]] || die "the fetched model is not owned by the user tessera"
completion "$port"
stop_and_wait "$serve_pid" 60 || die "serve did not exit 0 on SIGTERM"
grep -q 'draining' "$current_log" || die "serve's log has no drain line"
say "tessera-entrypoint fetch-model (the model present: the build-time bake's path)"
as_tessera tessera-entrypoint fetch-model

# --- 6. mpirun -np 2 in the root ---------------------------------------------------------------------------------
say "ompi_info: the image's mca-params file"
info="$(as_root ompi_info --param odls base --level 9)"
grep sigkill_timeout <<<"$info" | sed 's/^ */  /'
grep -q 'odls_base_sigkill_timeout" (current value: "45", data source: file' <<<"$info" ||
  die "odls_base_sigkill_timeout is not 45 from /etc/openmpi/openmpi-mca-params.conf"
port="$(free_port)"
say "as root: tessera-entrypoint mpirun -np 2 tessera serve --tp 1 --port $port --set server.drain_timeout_s=20"
current_log="$work/mpirun.log"
bg_as_root tessera-entrypoint mpirun -np 2 --bind-to none tessera serve --model default --tp 1 --host 127.0.0.1 \
  --port "$port" --set server.drain_timeout_s=20 >"$current_log" 2>&1 &
mpi_pid=$!
pids+=("$mpi_pid")
wait_ready "$port" "$mpi_pid" 120
ranks=0
for d in /proc/[0-9]*; do
  [[ "$(readlink "$d/root" 2>/dev/null)" == "$root" ]] || continue
  env_of="$(tr '\0' '\n' <"$d/environ" 2>/dev/null)" || continue
  grep -q '^OMPI_COMM_WORLD_RANK=' <<<"$env_of" || continue
  ranks=$((ranks + 1))
  grep -qx 'OMPI_MCA_odls_base_sigkill_timeout=35' <<<"$env_of" ||
    die "rank pid ${d#/proc/}: OMPI_MCA_odls_base_sigkill_timeout is not 35 (drain 20 s + 15)"
done
((ranks == 2)) || die "expected 2 ranks in the root, found $ranks"
echo "2 ranks, OMPI_MCA_odls_base_sigkill_timeout=35 (drain 20 s + 15)"
completion "$port"
stop_and_wait "$mpi_pid" 60 || die "mpirun did not exit 0 on SIGTERM"
grep -q 'to world rank 0' "$current_log" || die "the entrypoint did not forward SIGTERM to world rank 0"

# --- 7. sshd, and mpirun over ssh --------------------------------------------------------------------------------
say "sshd -t"
as_root /usr/sbin/sshd -t || die "sshd -t failed"
ssh_port="$(free_port)"
say "sshd -De on 127.0.0.2:$ssh_port; mpirun --host 127.0.0.1,127.0.0.2 over ssh"
as_root bash -c 'mkdir -p -m 0700 /root/.ssh && ssh-keygen -q -t ed25519 -N "" -f /root/.ssh/id_ed25519 &&
  cp /root/.ssh/id_ed25519.pub /root/.ssh/authorized_keys &&
  printf "Host 127.0.0.2\n  Port %s\n  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n  LogLevel ERROR\n" \
    "$1" >/root/.ssh/config' _ "$ssh_port"
current_log="$work/sshd.log"
bg_as_root /usr/sbin/sshd -D -e -p "$ssh_port" -o ListenAddress=127.0.0.2 >"$current_log" 2>&1 &
sshd_pid=$!
pids+=("$sshd_pid")
for _ in $(seq 50); do as_root ssh-keyscan -p "$ssh_port" 127.0.0.2 >/dev/null 2>&1 && break; sleep 0.2; done
as_root ssh 127.0.0.2 'echo "ssh: $(id -un)@$(hostname), PATH=$PATH, $(command -v tessera orted | tr "\n" " ")"' ||
  die "ssh to the sshd in the root failed"
port="$(free_port)"
current_log="$work/mpirun-ssh.log"
bg_as_root tessera-entrypoint mpirun -np 2 --host 127.0.0.1:1,127.0.0.2:1 --bind-to none tessera serve --model default \
  --tp 1 --host 127.0.0.1 --port "$port" >"$current_log" 2>&1 &
mpi_pid=$!
pids+=("$mpi_pid")
wait_ready "$port" "$mpi_pid" 120
via_ssh=0
for d in /proc/[0-9]*; do
  [[ "$(readlink "$d/root" 2>/dev/null)" == "$root" ]] || continue
  [[ "$(cat "$d/comm" 2>/dev/null)" == orted ]] && via_ssh=1
done
((via_ssh)) || die "no orted: the second host's rank was not started over ssh"
echo "the worker rank runs under an orted that ssh started"
completion "$port"
stop_and_wait "$mpi_pid" 60 || die "mpirun over ssh did not exit 0"
{ kill -TERM "$sshd_pid" && wait "$sshd_pid"; } 2>/dev/null || true
current_log=""

# --- 8. the CUDA backend ------------------------------------------------------------------------------------------
# The libraries ldd cannot resolve in the root, with extra directories on LD_LIBRARY_PATH (none: "").
unresolved() {
  local out
  out="$(as_root env LD_LIBRARY_PATH="$1" ldd /opt/tessera/bin/libtessera_cuda.so)"
  awk '/not found/ {print $1}' <<<"$out" | sort -u | tr '\n' ' '
}
plugin=""
((plugin_installed)) && plugin="$work/libtessera_cuda.so"
[[ -n "${TESSERA_CUDA_PLUGIN:-}" ]] && plugin="$TESSERA_CUDA_PLUGIN"
if [[ -n "$plugin" ]]; then
  say "the CUDA backend: ldd $plugin in the CPU runtime"
  [[ -f "$plugin" ]] || die "no $plugin"
  cp "$plugin" "$root/opt/tessera/bin/libtessera_cuda.so"
  missing="$(unresolved "")"
  echo "  not found: $missing"
  for lib in $missing; do
    [[ "$lib" =~ ^lib(cudart|cublas|cublasLt|nccl)\.so\.[0-9]+$ ]] ||
      die "the CUDA backend needs $lib, which runtime-install.sh cuda does not add"
  done
  if [[ "${TESSERA_IMAGE_TEST_CUDA:-0}" == 1 ]]; then
    say "runtime-install.sh cuda"
    cp "$repo_root/deploy/docker/runtime-install.sh" "$root/tmp/runtime-install.sh"
    in_build bash /tmp/runtime-install.sh cuda
    rm "$root/tmp/runtime-install.sh"
    missing="$(unresolved "")"
    [[ -z "$missing" ]] || die "not found after runtime-install.sh cuda: $missing"
    cuda_path=""
  else
    libs="${TESSERA_CUDA_LIBS:-}"
    if [[ -z "$libs" ]]; then
      libs="$(ldd "$plugin" | awk '$1 ~ /^libcudart\.so/ && $3 ~ /^\// {print $3}')"
      libs="${libs%/*}"
    fi
    cuda_path=/opt/host-cuda-libs
    if [[ -n "$missing" && -d "$libs" ]]; then
      say "with the host's CUDA libraries from $libs (standing in for runtime-install.sh cuda's packages)"
      mkdir -p "$root$cuda_path"
      # Until ldd resolves everything: libcublas.so needs libcublasLt.so, which ldd names only once it finds the first.
      for _ in 1 2 3 4; do
        [[ -n "$missing" ]] || break
        for lib in $missing; do
          [[ "$lib" =~ ^lib(cudart|cublas|cublasLt|nccl)\.so\.[0-9]+$ ]] ||
            die "the CUDA backend needs $lib, which runtime-install.sh cuda does not add"
          [[ -f "$libs/$lib" ]] || die "no $lib in $libs (TESSERA_CUDA_LIBS)"
          cp -L "$libs/$lib" "$root$cuda_path/"
        done
        missing="$(unresolved "$cuda_path")"
      done
      [[ -z "$missing" ]] || die "not found with the libraries of $libs: $missing"
      echo "  resolved with: $(ls "$root$cuda_path" | tr '\n' ' ')"
    else
      missing="unchecked"
    fi
  fi
  if [[ "$missing" != unchecked ]]; then
    set +e
    out="$(as_root env LD_LIBRARY_PATH="$cuda_path" tessera generate --backend cuda --model default --prompt Hi \
      --max-tokens 1 2>&1)"
    rc=$?
    set -e
    tail -n 3 <<<"$out" | sed 's/^/  /'
    if ((rc != 0)); then
      grep -q 'no CUDA device is usable' <<<"$out" || die "--backend cuda failed before it asked for a GPU"
      echo "the CUDA backend loaded and asked for a GPU (there is none here)"
    fi
  fi
  rm -rf "$root/opt/host-cuda-libs" "$root/opt/tessera/bin/libtessera_cuda.so"
else
  say "no CUDA backend in $build_dir (a -DTESSERA_CUDA=OFF build; TESSERA_CUDA_PLUGIN names one): step 8 skipped"
fi
say "all image steps passed"
