#!/usr/bin/env bash
# Install this SlotDeck bundle for the current user (no root): the program under $PREFIX/opt/slotdeck,
# `slotdeck` on $PREFIX/bin, a menu entry and its icon. PREFIX defaults to ~/.local.
# Run it again to upgrade; `install.sh --uninstall` removes what it put there (data in ~/.local/share/slotdeck stays).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
prefix="${PREFIX:-$HOME/.local}"
app="$prefix/opt/slotdeck"
bin="$prefix/bin/slotdeck"
entry="$prefix/share/applications/slotdeck.desktop"
icon="$prefix/share/icons/hicolor/scalable/apps/slotdeck.svg"

if [[ "${1:-}" == "--uninstall" ]]; then
  rm -rf "$app" "$bin" "$entry" "$icon"
  echo "removed SlotDeck from $prefix"
  exit 0
fi

mkdir -p "$prefix/opt" "$prefix/bin" "$(dirname "$entry")" "$(dirname "$icon")"
rm -rf "$app.new"
cp -a "$here" "$app.new"
rm -rf "$app"
mv "$app.new" "$app"
ln -sfn "$app/slotdeck" "$bin"
cp "$here/slotdeck.svg" "$icon"
sed "s|@BIN@|$app/slotdeck|" "$here/slotdeck.desktop" > "$entry"
echo "installed SlotDeck $("$bin" --version | cut -d' ' -f2) in $app"
echo "run: $bin   (or SlotDeck in your applications menu)"
case ":$PATH:" in *":$prefix/bin:"*) ;; *) echo "note: $prefix/bin is not on your PATH" ;; esac
