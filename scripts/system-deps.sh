#!/usr/bin/env bash
# System libraries Qt needs to draw (offscreen and under Xvfb), plus any Debian packages named as arguments
# (`make test` adds dpkg-dev: dpkg-shlibdeps for the .deb and its test).
# - Debian/Ubuntu (dpkg + apt-get): installs the missing ones (as root, or through sudo).
# - Elsewhere, or without root/sudo: prints one line naming what to install and exits 0,
#   so `make run` goes on (the dashboard says what is missing if it cannot start).
set -euo pipefail
packages=(xvfb xauth x11-utils libegl1 libgl1 libxkbcommon0 libxkbcommon-x11-0 libfontconfig1 libdbus-1-3
  libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxcb-shape0 libxcb-xkb1 libxcb-render-util0 libxcb-image0
  libxcb-randr0 libxcb-xinerama0 fonts-dejavu-core "$@")

say() { echo "system-deps: $*"; }

case "$(uname -s)" in
  Darwin | MINGW* | MSYS* | CYGWIN*) exit 0 ;;  # Qt's wheels bring what they need there
esac

if ! command -v dpkg-query >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
  if command -v dnf >/dev/null 2>&1; then
    hint="dnf install mesa-libEGL mesa-libGL libxkbcommon-x11 xcb-util-cursor xcb-util-wm xcb-util-keysyms xcb-util-renderutil xcb-util-image fontconfig dbus-libs xorg-x11-server-Xvfb xorg-x11-xauth"
  elif command -v pacman >/dev/null 2>&1; then
    hint="pacman -S --needed libglvnd libxkbcommon-x11 xcb-util-cursor xcb-util-wm xcb-util-keysyms xcb-util-renderutil xcb-util-image fontconfig dbus xorg-server-xvfb xorg-xauth"
  elif command -v zypper >/dev/null 2>&1; then
    hint="zypper install libEGL1 libGL1 libxkbcommon-x11-0 libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxcb-render-util0 libxcb-image0 fontconfig libdbus-1-3 xvfb-run"
  else
    hint="the EGL/OpenGL, xkbcommon-x11, xcb-cursor/icccm/keysyms/render-util/image, fontconfig and D-Bus libraries, plus Xvfb for the tests"
  fi
  say "no apt-get here; if the dashboard does not start, install with your package manager: $hint"
  exit 0
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
  else
    say "not root and no sudo; as root, run: apt-get install --no-install-recommends ${missing[*]}"
    exit 0
  fi
fi
say "installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
