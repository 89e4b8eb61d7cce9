#!/usr/bin/env bash
# Fetches the packages hqflow's real-image pools come from, without installing them, and
# unpacks the files the pools need:
#   Debian openclipart-png + openclipart-svg  -> DIR/openclipart       (public domain)
#   Debian tuxpaint-stamps-default            -> DIR/tuxpaint-stamps   (GPL: never commit it)
#   Debian dataset-fashion-mnist              -> DIR/fashion-mnist
#   npm emoji-datasource-google@16.0.0        -> DIR/emoji
# then, with --ingest OUT, writes the pools OUT/NAME with `hqflow ingest package NAME`
# ($HQFLOW, default `hqflow` on PATH).
#
# Usage: fetch_pools.sh DIR [--ingest OUT]
# Needs apt-get, dpkg-deb and npm, and the Debian and npm registries (Debian 12 has these
# packages; `apt-get update` is run once when the package lists lack them, which needs root).
# A package already unpacked (DIR/NAME/.complete) is not fetched again; the downloaded .deb and
# .tgz files are removed once unpacked. About 420 MB to download, 600 MB unpacked.
# Exit status: 0 when every package is there; 3 when they cannot be fetched (a tool or the
# network is missing; callers such as tests/run.sh skip what needs them); else an error.
set -euo pipefail

usage() { echo "usage: $0 DIR [--ingest OUT]" >&2; exit 2; }
[[ $# -ge 1 ]] || usage
DIR="$1"; shift
OUT=""
if [[ $# -gt 0 ]]; then
  [[ $# -eq 2 && "$1" == "--ingest" ]] || usage
  OUT="$2"
fi

EMOJI_VERSION="16.0.0"
say() { echo "fetch_pools: $*" >&2; }
cannot() { say "cannot fetch: $*"; exit 3; }

mkdir -p "$DIR/downloads"
DIR="$(cd "$DIR" && pwd)"
DL="$DIR/downloads"

done_already() { [[ -f "$DIR/$1/.complete" ]]; }

debs=()
for name in openclipart tuxpaint-stamps fashion-mnist; do
  done_already "$name" && continue
  case "$name" in
    openclipart) debs+=(openclipart-png openclipart-svg) ;;
    tuxpaint-stamps) debs+=(tuxpaint-stamps-default) ;;
    fashion-mnist) debs+=(dataset-fashion-mnist) ;;
  esac
done

if [[ ${#debs[@]} -gt 0 ]]; then
  command -v apt-get >/dev/null || cannot "apt-get is not available (a Debian-based system is needed)"
  command -v dpkg-deb >/dev/null || cannot "dpkg-deb is not available"
  started=$SECONDS
  if ! (cd "$DL" && apt-get download "${debs[@]}" >/dev/null 2>"$DL/apt.log"); then
    if [[ $(id -u) -eq 0 ]]; then
      say "package lists lack ${debs[*]}: apt-get update"
      apt-get update -qq >/dev/null 2>>"$DL/apt.log" || { cat "$DL/apt.log" >&2; cannot "apt-get update failed"; }
      (cd "$DL" && apt-get download "${debs[@]}" >/dev/null 2>>"$DL/apt.log") \
        || { cat "$DL/apt.log" >&2; cannot "apt-get download ${debs[*]} failed"; }
    else
      cat "$DL/apt.log" >&2
      cannot "apt-get download ${debs[*]} failed (run apt-get update as root once)"
    fi
  fi
  say "downloaded ${debs[*]}: $(du -ch "$DL"/*.deb | tail -1 | cut -f1) in $((SECONDS - started)) s"
fi

# unpack NAME DEB-PACKAGE [TAR PATTERNS…]: the data of a downloaded .deb into DIR/NAME.
unpack_deb() {
  local name="$1" pkg="$2"; shift 2
  local deb
  deb="$(ls "$DL/${pkg}"_*.deb 2>/dev/null | head -1)"
  [[ -n "$deb" ]] || { say "no $pkg .deb in $DL"; exit 1; }
  mkdir -p "$DIR/$name"
  dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$DIR/$name" --wildcards "$@"
}

if ! done_already openclipart; then
  rm -rf "$DIR/openclipart"
  unpack_deb openclipart openclipart-png './usr/share/openclipart/png/*'
  unpack_deb openclipart openclipart-svg './usr/share/openclipart/svg/*'
  touch "$DIR/openclipart/.complete"
fi
if ! done_already tuxpaint-stamps; then
  rm -rf "$DIR/tuxpaint-stamps"
  # Pictures and descriptions only (the package is mostly sounds).
  unpack_deb tuxpaint-stamps tuxpaint-stamps-default '*.png' '*.svg' '*.txt'
  touch "$DIR/tuxpaint-stamps/.complete"
fi
if ! done_already fashion-mnist; then
  rm -rf "$DIR/fashion-mnist"
  unpack_deb fashion-mnist dataset-fashion-mnist './usr/share/datasets/fashion-mnist/*'
  touch "$DIR/fashion-mnist/.complete"
fi

if ! done_already emoji; then
  command -v npm >/dev/null || cannot "npm is not available"
  started=$SECONDS
  (cd "$DL" && npm pack --silent "emoji-datasource-google@$EMOJI_VERSION" >/dev/null 2>"$DL/npm.log") \
    || { cat "$DL/npm.log" >&2; cannot "npm pack emoji-datasource-google@$EMOJI_VERSION failed"; }
  say "downloaded emoji-datasource-google@$EMOJI_VERSION: $(du -h "$DL"/emoji-datasource-google-*.tgz | cut -f1) in $((SECONDS - started)) s"
  rm -rf "$DIR/emoji"
  mkdir -p "$DIR/emoji"
  tar -xzf "$DL/emoji-datasource-google-$EMOJI_VERSION.tgz" -C "$DIR/emoji" \
    package/emoji.json package/img/google/64
  touch "$DIR/emoji/.complete"
fi
rm -rf "$DL"

if [[ -n "$OUT" ]]; then
  HQFLOW="${HQFLOW:-hqflow}"
  mkdir -p "$OUT"
  for name in openclipart tuxpaint-stamps fashion-mnist emoji; do
    "$HQFLOW" ingest package "$name" "$DIR/$name" --out "$OUT/$name"
  done
fi
say "packages unpacked under $DIR"
