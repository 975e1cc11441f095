#!/usr/bin/env bash
# Wrap the Linux bundle (packaging/build.sh) as a Debian package: OUT/slotdeck_VERSION-1_ARCH.deb with
# the program under /opt/slotdeck, /usr/bin/slotdeck, a menu entry and icon, a man page, and
# slotdeck.service for `slotdeck serve` (installed disabled) with /etc/slotdeck/slotdeck.toml.
# Usage: build-deb.sh [BUNDLE_DIR [OUT_DIR]]   (defaults dist/slotdeck and dist; `make deb` builds both)
# Needs dpkg-deb and dpkg-shlibdeps (package dpkg-dev). DEB_MAINTAINER and DEB_COMPRESSION (xz) can be set.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
here="$root/packaging/deb"
bundle="$(realpath -m "${1:-$root/dist/slotdeck}")"
out="$(realpath -m "${2:-$root/dist}")"
maintainer="${DEB_MAINTAINER:-$(git -C "$root" config user.name || echo SlotDeck) <$(git -C "$root" config user.email || echo slotdeck@localhost)>}"

[ -x "$bundle/slotdeck" ] || { echo "build-deb: no bundle at $bundle (run: make dist)" >&2; exit 2; }
for tool in dpkg-deb dpkg-shlibdeps; do
  command -v "$tool" >/dev/null || { echo "build-deb: $tool is missing (apt-get install dpkg-dev)" >&2; exit 2; }
done
version="$("$bundle/slotdeck" --version | cut -d' ' -f2)-1"
arch="$(dpkg --print-architecture)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
pkg="$work/src/debian/slotdeck"  # where dpkg-shlibdeps expects the package's files

# the program; install.sh and its menu entry are the tarball's per-user installer, not needed here
mkdir -p "$pkg/opt" "$pkg/usr/bin"
cp -a "$bundle" "$pkg/opt/slotdeck"
rm -f "$pkg/opt/slotdeck/install.sh" "$pkg/opt/slotdeck/slotdeck.desktop" "$pkg/opt/slotdeck/slotdeck.svg"
ln -s /opt/slotdeck/slotdeck "$pkg/usr/bin/slotdeck"

install -D -m 644 "$root/packaging/slotdeck.desktop" "$pkg/usr/share/applications/slotdeck.desktop"
sed -i "s|@BIN@|slotdeck|" "$pkg/usr/share/applications/slotdeck.desktop"
install -D -m 644 "$root/desktop/resources/icons/slotdeck.svg" "$pkg/usr/share/icons/hicolor/scalable/apps/slotdeck.svg"
install -D -m 644 "$root/docs/deploy/slotdeck.service" "$pkg/lib/systemd/system/slotdeck.service"
install -D -m 644 "$here/slotdeck.toml" "$pkg/etc/slotdeck/slotdeck.toml"
install -d "$pkg/usr/share/man/man1" "$pkg/usr/share/doc/slotdeck"
gzip -9n < "$here/slotdeck.1" > "$pkg/usr/share/man/man1/slotdeck.1.gz"
install -m 644 "$here/copyright" "$root"/docs/*.md "$pkg/usr/share/doc/slotdeck/"
printf 'slotdeck (%s) unstable; urgency=medium\n\n  * Built from the SlotDeck bundle (packaging/build.sh).\n\n -- %s  %s\n' \
  "$version" "$maintainer" "$(date -R -d "@${SOURCE_DATE_EPOCH:-$(date +%s)}")" | gzip -9n > "$pkg/usr/share/doc/slotdeck/changelog.Debian.gz"
find "$pkg" -type d -exec chmod 755 {} +
find "$pkg/opt/slotdeck/_internal" -type f -name '*.so*' -exec chmod 644 {} +  # libraries are loaded, not run

# Depends: the system libraries the bundled binaries need and do not carry. Optional Qt plugins whose
# libraries this machine lacks (Wayland, GTK theme, ...) cannot have worked here either: they are left
# out of the count, and Qt skips a plugin it cannot load.
mkdir -p "$pkg/DEBIAN"
printf 'Source: slotdeck\n\nPackage: slotdeck\nArchitecture: any\n' > "$work/src/debian/control"
elves=()
while IFS= read -r -d '' file; do
  [[ "$(head -c4 "$file")" == $'\x7fELF' ]] || continue
  [[ "$(ldd "$file" 2>/dev/null)" == *"not found"* ]] || elves+=("-e$file")
done < <(find "$pkg/opt/slotdeck" -type f \( -name '*.so*' -o -perm -u+x \) -print0)
mapfile -t libdirs < <(find "$pkg/opt/slotdeck" -name '*.so*' -printf '-l%h\n' | sort -u)
depends="$(cd "$work/src" && dpkg-shlibdeps -O --ignore-missing-info "${libdirs[@]}" "${elves[@]}" 2>"$work/shlibdeps.log" \
  | sed -n 's/^shlibs:Depends=//p')" || { grep -v warning: "$work/shlibdeps.log" >&2; exit 1; }

cat > "$pkg/DEBIAN/control" <<CONTROL
Package: slotdeck
Version: $version
Architecture: $arch
Maintainer: $maintainer
Installed-Size: $(du -sk --exclude=DEBIAN "$pkg" | cut -f1)
Depends: $depends
Section: utils
Priority: optional
Description: queues with concurrency slots for slow GPU/LLM work, plus a dashboard
 SlotDeck puts slow, resource-hungry work (LLM calls, GPU training and
 inference, report generation) behind named queues with concurrency limits:
 requests wait in priority order, leases expire when a holder dies, GPU
 requests are admitted only where memory allows, and jobs survive restarts.
 .
 This package holds the self-contained program (under /opt/slotdeck), its
 desktop dashboard, the slotdeck command and slotdeck.service for
 slotdeck serve (installed disabled).
CONTROL
echo /etc/slotdeck/slotdeck.toml > "$pkg/DEBIAN/conffiles"
install -m 755 "$here/postinst" "$here/prerm" "$here/postrm" "$pkg/DEBIAN/"
(cd "$pkg" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | LC_ALL=C sort -z | xargs -0 md5sum) > "$pkg/DEBIAN/md5sums"

mkdir -p "$out"
deb="$out/slotdeck_${version}_$arch.deb"
dpkg-deb --root-owner-group -Z"${DEB_COMPRESSION:-xz}" --build "$pkg" "$deb" >/dev/null
echo "built $deb ($(du -h "$deb" | cut -f1))"
