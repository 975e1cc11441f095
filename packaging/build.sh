#!/usr/bin/env bash
# Build the Linux bundle and its installer tarball: OUT/slotdeck/ (run OUT/slotdeck/slotdeck) and
# OUT/slotdeck-VERSION-linux-ARCH.tar.gz (unpack, run ./slotdeck/install.sh). OUT defaults to dist/.
# Needs the venv with the packaging extra (`make dist` sees to it).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="$(realpath -m "${1:-$root/dist}")"
python="${PYTHON:-$root/.venv/bin/python}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

echo "building the bundle (PyInstaller, about a minute)..."
"$python" -m PyInstaller --noconfirm --clean --log-level WARN \
  --distpath "$out" --workpath "$work" "$root/packaging/slotdeck.spec"
cp "$root/packaging/install.sh" "$root/packaging/slotdeck.desktop" "$out/slotdeck/"
cp "$root/desktop/resources/icons/slotdeck.svg" "$out/slotdeck/"
chmod +x "$out/slotdeck/install.sh"

version="$("$out/slotdeck/slotdeck" --version | cut -d' ' -f2)"
tarball="$out/slotdeck-$version-linux-$(uname -m).tar.gz"
tar -C "$out" -czf "$tarball" slotdeck
echo "built $out/slotdeck ($(du -sh "$out/slotdeck" | cut -f1)) and $tarball ($(du -h "$tarball" | cut -f1))"
