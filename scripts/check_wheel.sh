#!/usr/bin/env bash
# Check that vbmkit works installed from a wheel, without a checkout: create a fresh venv in a
# temporary folder outside the repository, install torch first (as scripts/setup.sh does:
# torch==2.13.0, or VBMKIT_TORCH), then this repository non-editable (`pip install <repo>`), and
# from /tmp run `vbmkit --version`, `vbmkit demo --quick`, `vbmkit simulate` + `vbmkit roi` with the
# default atlas (lpba40, shipped in the wheel as vbmkit/_atlases) and `vbmkit demo --truth` (the
# whole study from the shipped examples/demo.yaml), then check that provenance.json names the
# resources by package and version, not by a path into the checkout.
# Every command is printed before it runs; the temporary folder is removed at the end
# (KEEP=1 keeps it). Usage: scripts/check_wheel.sh   (a few minutes; pip uses the configured index)
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-python3}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/vbmkit-wheel.XXXXXX")
case "$WORK/" in
  "$REPO"/*) echo "check_wheel: $WORK is inside the checkout $REPO; set TMPDIR elsewhere" >&2; exit 2 ;;
esac
had_build=0; [ -e "$REPO/build" ] && had_build=1
cleanup() {
  # pip builds the wheel in <repo>/build: remove it unless it was there before
  if [ "$had_build" = 0 ]; then rm -rf "$REPO/build"; fi
  if [ "${KEEP:-0}" = 1 ]; then echo "check_wheel: kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

run() {
  printf '+ %s\n' "$*"
  "$@"
}

run "$PY" -m venv "$WORK/venv"
V="$WORK/venv/bin"
run "$V/python" -m pip install -q --upgrade pip
run "$V/python" -m pip install -q "${VBMKIT_TORCH:-torch==2.13.0}"
run "$V/python" -m pip install -q "$REPO"

run cd /tmp
run "$V/vbmkit" --version
run "$V/python" -c "import vbmkit, sys; sys.exit(f'imported from the checkout: {vbmkit.__file__}' if vbmkit.__file__.startswith('$REPO/') else 0)"
run "$V/vbmkit" demo --quick --out "$WORK/demo" --subsamples 10 --permutations 10 --device cpu
# the quick demo's maps are smoothed s6mwp1 toy maps on a 3 mm grid, which `vbmkit roi` does
# not measure (it needs mwp1/mwp2 maps in template space): measure simulated true tissue maps
run "$V/vbmkit" simulate --n 4 --no-images --out "$WORK/sim"
run "$V/vbmkit" roi "$WORK/sim/truth" --out "$WORK/roi" --device cpu
run test -s "$WORK/roi/roi_wide.csv"
run "$V/vbmkit" demo --truth --subjects 10 --out "$WORK/study" --device cpu
prov="$WORK/study/study/provenance.json"
run "$V/python" - "$prov" "$REPO" <<'EOF'
import json, sys
prov = json.load(open(sys.argv[1]))
res = prov["resources"]
for key, entry in res.items():
    print(f"  {key}: {entry.get('source', entry)}")
text = json.dumps(res)
if sys.argv[2] + "/" in text:
    sys.exit(f"provenance names a path into the checkout {sys.argv[2]}: {text}")
if not res["atlas:lpba40"]["source"].startswith("vbmkit "):
    sys.exit(f"atlas source: expected 'vbmkit <version> (vbmkit/_atlases/...)'; got {res['atlas:lpba40']}")
EOF
echo "check_wheel: all commands succeeded"
