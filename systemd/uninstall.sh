#!/bin/sh
# Remove evcp installed by systemd/install.sh.
#
#   sudo systemd/uninstall.sh            stop and remove the service and the software
#   sudo systemd/uninstall.sh --purge    ... and the config, the state and the user evcp
#   systemd/uninstall.sh --root DIR      the same below DIR (see install.sh --root)
#
# Stopping the service opens the contactors and stops running transactions (SIGTERM).
# Without --purge, /etc/evcp (config, secrets), /var/lib/evcp (state database: transactions
# and messages not yet delivered to the central system), /var/log/evcp and the user evcp are
# kept, so a later install.sh carries on where this one stopped. With --purge they are
# deleted. The groups gpio, spi and dialout are always kept (other software uses them).
#
# Options:
#   --root DIR   remove below DIR instead of / ; systemctl, userdel and groupdel are not run
#                but printed as "would: <command>" lines, and root is not required.
#   --purge      also delete the config, the state, the logs and the user evcp
set -eu

usage() {
    sed -n '2,/^set -eu/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//' >&2
    exit 2
}

die() {
    echo "uninstall.sh: $*" >&2
    exit 1
}

ROOT=/
PURGE=0
while [ $# -gt 0 ]; do
    case "$1" in
        --root) [ $# -ge 2 ] || usage; ROOT=$2; shift 2 ;;
        --root=*) ROOT=${1#*=}; shift ;;
        --purge) PURGE=1; shift ;;
        -h|--help) usage ;;
        *) echo "uninstall.sh: unknown option: $1" >&2; usage ;;
    esac
done

USER_NAME=evcp
OPT_DIR=/opt/evcp
CONF_DIR=/etc/evcp
STATE_DIR=/var/lib/evcp
LOG_DIR=/var/log/evcp
UNIT_FILE=/etc/systemd/system/evcp.service
LINK=/usr/local/bin/evcp

[ -d "$ROOT" ] || die "no such directory: $ROOT"
ROOT=$(cd "$ROOT" && pwd -P)
if [ "$ROOT" = / ]; then
    R=
    DRY=0
    [ "$(id -u)" = 0 ] || die "run it as root, or use --root DIR"
else
    R=$ROOT
    DRY=1
fi

. "$(dirname "$0")/lib.sh"

# A dry run cannot know whether install.sh's useradd ran, so it always prints the userdel.
user_exists() {
    [ "$DRY" = 1 ] || getent passwd "$1" >/dev/null
}

remove() {  # remove WHAT PATH: delete PATH below the root, say so
    if [ -e "$R$2" ] || [ -L "$R$2" ]; then
        rm -rf "$R$2"
        say "$1 $2: removed"
    else
        say "$1 $2: not there"
    fi
}

SYSTEMD_RUNNING=0
{ [ "$DRY" = 1 ] || [ -d /run/systemd/system ]; } && SYSTEMD_RUNNING=1

# --- 1. stop (contactors open, transactions stopped) and disable the service ---
if [ -e "$R$UNIT_FILE" ]; then
    if [ "$SYSTEMD_RUNNING" = 1 ]; then
        step "systemd: evcp stopped" systemctl stop evcp
    fi
    if [ "$DRY" = 1 ] && command -v systemctl >/dev/null 2>&1; then
        # Offline, on the tree: removes the WantedBy= link install.sh made with systemctl --root.
        systemctl --root "$R" disable evcp >/dev/null 2>&1 || say "systemd: systemctl --root $R disable evcp failed"
        say "systemd: evcp disabled in $R (systemctl --root)"
    else
        step "systemd: evcp disabled" systemctl disable evcp
    fi
else
    say "systemd: no evcp unit installed"
fi

# --- 2. the unit and the software ---
remove unit "$UNIT_FILE"
if [ "$PURGE" = 1 ]; then
    remove "unit drop-ins" "$UNIT_FILE.d"
    remove "kernel watchdog drop-in" /etc/systemd/system.conf.d/evcp-watchdog.conf
fi
if [ "$SYSTEMD_RUNNING" = 1 ]; then
    step "systemd: reloaded" systemctl daemon-reload
    if [ "$DRY" = 1 ]; then
        system systemctl reset-failed evcp
    else
        systemctl reset-failed evcp 2>/dev/null || true
    fi
fi
if [ -L "$R$LINK" ] && [ "$(readlink "$R$LINK")" = "$OPT_DIR/venv/bin/evcp" ]; then
    remove command "$LINK"
fi
remove software "$OPT_DIR"

# --- 3. config, state, logs and the user: only with --purge ---
if [ "$PURGE" = 1 ]; then
    remove config "$CONF_DIR"
    remove state "$STATE_DIR"
    remove logs "$LOG_DIR"
    if user_exists "$USER_NAME"; then
        step "user $USER_NAME: removed" userdel "$USER_NAME"
    else
        say "user $USER_NAME: not there"
    fi
    # userdel removes the user's own group too, unless something else still uses it.
    if [ "$DRY" = 0 ] && getent group "$USER_NAME" >/dev/null; then
        step "group $USER_NAME: removed" groupdel "$USER_NAME"
    fi
else
    say "kept: $CONF_DIR (config), $STATE_DIR (state), $LOG_DIR, user $USER_NAME;" \
        "--purge deletes them"
fi
