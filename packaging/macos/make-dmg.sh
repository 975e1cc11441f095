#!/usr/bin/env bash
# macOS: build dist/SlotDeck.app with PyInstaller and put it in dist/slotdeck-VERSION-macos-ARCH.dmg
# (open the .dmg, drag SlotDeck to Applications). Needs the venv with the packaging extra and hdiutil.
# Untested on these machines: .github/workflows/installers.yml builds and checks it on a macOS runner.
# The app is not signed or notarised: Gatekeeper asks before the first start (right-click, Open).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
python="${PYTHON:-$root/.venv/bin/python}"
out="$root/dist"
"$python" -m PyInstaller --noconfirm --clean --log-level WARN --distpath "$out" --workpath "$root/build/macos" \
  "$root/packaging/slotdeck.spec"
app="$out/SlotDeck.app"
version="$("$app/Contents/MacOS/slotdeck" --version | cut -d' ' -f2)"
stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
cp -R "$app" "$stage/"
ln -s /Applications "$stage/Applications"
dmg="$out/slotdeck-$version-macos-$(uname -m).dmg"
hdiutil create -volname SlotDeck -srcfolder "$stage" -ov -format UDZO "$dmg"
echo "built $dmg"
