#!/bin/sh
# Set-up and everyday commands for evcp on a fresh Debian / Raspberry Pi OS machine.
#   ./dev.sh bench [evcp bench options]   simulated charger + local central system + status page
#   ./dev.sh test  [pytest options]       the whole test suite
# The first run creates .venv beside this file and installs evcp into it.
set -eu
cd "$(dirname "$0")"
VENV=.venv

make_venv() {
    if python3 -m venv "$VENV" 2>/dev/null; then
        return 0
    fi
    rm -rf "$VENV"
    # Debian ships venv's pip bootstrap separately (package python3-venv).
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "dev.sh: installing python3-venv" >&2
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
        python3 -m venv "$VENV"
    else
        echo "dev.sh: python3 cannot create a virtual environment; run: sudo apt install python3-venv" >&2
        exit 1
    fi
}

ensure_env() {
    [ -x "$VENV/bin/python" ] || make_venv
    stamp="$VENV/.installed-$(cksum pyproject.toml | cut -d' ' -f1)"
    if [ ! -f "$stamp" ]; then
        echo "dev.sh: installing evcp and its dependencies into $VENV" >&2
        "$VENV/bin/python" -m pip install --quiet --upgrade pip
        "$VENV/bin/python" -m pip install --quiet -e ".[test]"
        rm -f "$VENV"/.installed-*
        touch "$stamp"
    fi
}

# The status page's browser test drives Debian's Chromium (Playwright's own browser download is
# never used). Installed as root; otherwise the test is skipped and this says how to get it.
ensure_browser() {
    [ -x /usr/bin/chromium ] && return 0
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "dev.sh: installing chromium (Debian package) for the status page's browser test" >&2
        if apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; then
            return 0
        fi
        echo "dev.sh: apt-get could not install chromium; the browser test will be skipped" >&2
    else
        echo "dev.sh: no /usr/bin/chromium: the status page's browser test will be skipped;" \
             "to run it: sudo apt install chromium" >&2
    fi
}

command=${1:-}
[ $# -gt 0 ] && shift
case "$command" in
    bench) ensure_env; exec "$VENV/bin/evcp" bench "$@" ;;
    test)  ensure_env; ensure_browser; exec "$VENV/bin/python" -m pytest "$@" ;;
    *) echo "usage: ./dev.sh bench | ./dev.sh test [pytest options]" >&2; exit 2 ;;
esac
