#!/bin/sh
# Set-up and everyday commands for evcp on a fresh Debian / Raspberry Pi OS machine.
#   ./dev.sh bench [evcp bench options]   simulated charger + local central system + status page
#   ./dev.sh test  [pytest options]       the whole test suite, in EVCP_TEST_WORKERS (default 6)
#                                         parallel workers; EVCP_TEST_WORKERS=0 runs it in one process
# The first run creates .venv beside this file and installs evcp into it.
set -eu
cd "$(dirname "$0")"
VENV=.venv
PROMTOOL_DIR=$VENV/promtool
APT_UPDATED=

apt_update_once() {
    [ -n "$APT_UPDATED" ] && return 0
    apt-get update -qq && APT_UPDATED=1
}

make_venv() {
    if python3 -m venv "$VENV" 2>/dev/null; then
        return 0
    fi
    rm -rf "$VENV"
    # Debian ships venv's pip bootstrap separately (package python3-venv).
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "dev.sh: installing python3-venv" >&2
        apt_update_once && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
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

# A Debian package some tests need: installed as root with apt; otherwise those tests are
# skipped, and this says how to get it. ensure_package COMMAND PACKAGE WHAT-NEEDS-IT
ensure_package() {
    command -v "$1" >/dev/null 2>&1 && return 0
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "dev.sh: installing $2 (Debian package) for $3" >&2
        if apt_update_once && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null; then
            return 0
        fi
        echo "dev.sh: apt-get could not install $2; $3 will be skipped" >&2
    else
        echo "dev.sh: no $1: $3 will be skipped; to run it: sudo apt install $2" >&2
    fi
}

# The metrics test checks the /metrics text with promtool, which Debian ships in the package
# prometheus. Installing that package would also enable and start a Prometheus server, so only
# the one binary (48 MB) is taken out of the downloaded package into $PROMTOOL_DIR, where the
# test looks. As root with apt; otherwise the test is skipped and says so.
ensure_promtool() {
    { [ -x "$PROMTOOL_DIR/promtool" ] || command -v promtool >/dev/null 2>&1; } && return 0
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && command -v dpkg-deb >/dev/null 2>&1; then
        echo "dev.sh: taking promtool out of Debian's prometheus package into $PROMTOOL_DIR for the metrics test" >&2
        scratch=$(mktemp -d)
        chown _apt "$scratch" 2>/dev/null || true  # apt downloads as _apt where it can write
        if apt_update_once && (cd "$scratch" && apt-get download -qq prometheus >/dev/null) \
                && dpkg-deb -x "$scratch"/prometheus_*.deb "$scratch/package" \
                && mkdir -p "$PROMTOOL_DIR" && mv "$scratch/package/usr/bin/promtool" "$PROMTOOL_DIR/promtool"; then
            rm -rf "$scratch"
            return 0
        fi
        rm -rf "$scratch"
        echo "dev.sh: could not get promtool from the prometheus package; the promtool check will be skipped" >&2
    else
        echo "dev.sh: no promtool: the metrics test's promtool check will be skipped;" \
             "to run it: sudo apt install prometheus (or run ./dev.sh test as root)" >&2
    fi
}

command=${1:-}
[ $# -gt 0 ] && shift
case "$command" in
    bench) ensure_env; exec "$VENV/bin/evcp" bench "$@" ;;
    test)  ensure_env
           # The status page's browser test drives Debian's Chromium (never Playwright's own download).
           ensure_package /usr/bin/chromium chromium "the status page's browser test"
           ensure_package openssl openssl "the tests that need certificates (security profiles 2 and 3)"
           ensure_promtool; exec "$VENV/bin/python" -m pytest -n "${EVCP_TEST_WORKERS:-6}" "$@" ;;
    *) echo "usage: ./dev.sh bench | ./dev.sh test [pytest options]" >&2; exit 2 ;;
esac
