#!/bin/sh
# Install or upgrade evcp as a systemd service on a Raspberry Pi (Raspberry Pi OS / Debian).
#
#   sudo systemd/install.sh                  from a checkout of evcp (the usual case)
#   sudo sh install.sh --source DIR          from elsewhere; DIR is the evcp source tree
#   systemd/install.sh --root DIR --no-venv  into a scratch directory (tests, images)
#
# What it does, each step printed on one line:
#   - groups gpio, spi, dialout (created if missing, as on a plain Debian), system user evcp
#     (no login shell, home /var/lib/evcp) in those groups;
#   - on Debian, the packages it needs (python3-venv; on a Pi also python3-lgpio,
#     python3-rpi-lgpio, python3-spidev) unless --no-apt;
#   - venv /opt/evcp/venv with --system-site-packages (so the distribution's lgpio and spidev
#     are used) and evcp installed into it, with the [pi] extra on a Raspberry Pi
#     (aarch64/armv7l/armv6l); /usr/local/bin/evcp links to it. With --root the venv is
#     built below DIR and its scripts' shebangs are then rewritten to the deployed path
#     (/opt/evcp/venv/bin/python), so the tree works once copied to / (an image);
#   - /etc/evcp (root:evcp 0750) and /etc/evcp/evcp.toml (root:evcp 0640) from
#     config/evcp.example.toml, ONLY when there is no config yet; the current example is
#     always refreshed as /etc/evcp/evcp.example.toml;
#   - /var/lib/evcp (evcp:evcp 0750);
#   - /etc/systemd/system/evcp.service, then systemctl daemon-reload and enable (not start);
#     with --root, `systemctl --root DIR enable evcp` when systemctl is there;
#   - the Pi's config.txt (/boot/firmware/config.txt, else /boot/config.txt): adds
#     dtparam=strict_gpiod (Raspberry Pi kernels otherwise keep a GPIO output's level when the
#     process that drove it dies: a contactor closed at a crash would stay closed), backed up
#     first, unless --no-config-txt; warns when SPI, the PWM overlay or a UART line is missing;
#   - with --kernel-watchdog, /etc/systemd/system.conf.d/evcp-watchdog.conf: the hardware
#     watchdog through RuntimeWatchdogSec=14s (bcm2835-wdt allows at most about 15 s), so a
#     hung kernel reboots the Pi; without it the script only says whether one is set.
# Safe to re-run: that is how evcp is upgraded (the venv is reused, evcp reinstalled from the
# source; the config is never touched). A running service keeps the old version until
# `systemctl restart evcp`.
#
# Options:
#   --source DIR   evcp source tree (default: the checkout this script is in)
#   --root DIR     install below DIR instead of / . Then nothing outside DIR is changed:
#                  useradd, chown, systemctl and apt-get are not run but printed as
#                  "would: <command>" lines, and root is not required.
#   --no-venv      skip the venv and the package installation
#   --no-apt       do not install Debian packages
#   --python PY    the Python that creates the venv (default /usr/bin/python3)
#   --no-config-txt do not add dtparam=strict_gpiod to config.txt (only check and warn)
#   --kernel-watchdog  write the RuntimeWatchdogSec= drop-in (takes effect at the next boot
#                  or `systemctl daemon-reexec`)
set -eu

usage() {
    sed -n '2,/^set -eu/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//' >&2
    exit 2
}

die() {
    echo "install.sh: $*" >&2
    exit 1
}

ROOT=/
SOURCE=
WITH_VENV=1
WITH_APT=1
WITH_CONFIG_TXT=1
KERNEL_WATCHDOG=0
PYTHON=/usr/bin/python3
while [ $# -gt 0 ]; do
    case "$1" in
        --root) [ $# -ge 2 ] || usage; ROOT=$2; shift 2 ;;
        --root=*) ROOT=${1#*=}; shift ;;
        --source) [ $# -ge 2 ] || usage; SOURCE=$2; shift 2 ;;
        --source=*) SOURCE=${1#*=}; shift ;;
        --python) [ $# -ge 2 ] || usage; PYTHON=$2; shift 2 ;;
        --python=*) PYTHON=${1#*=}; shift ;;
        --no-venv) WITH_VENV=0; shift ;;
        --no-apt) WITH_APT=0; shift ;;
        --no-config-txt) WITH_CONFIG_TXT=0; shift ;;
        --kernel-watchdog) KERNEL_WATCHDOG=1; shift ;;
        -h|--help) usage ;;
        *) echo "install.sh: unknown option: $1" >&2; usage ;;
    esac
done

# The service's fixed paths (they are also in evcp.service).
USER_NAME=evcp
GROUPS_NEEDED="gpio spi dialout"
VENV=/opt/evcp/venv
CONF_DIR=/etc/evcp
CONF_FILE=$CONF_DIR/evcp.toml
STATE_DIR=/var/lib/evcp
UNIT_FILE=/etc/systemd/system/evcp.service
LINK=/usr/local/bin/evcp

# Everything that is created must be readable by the evcp user (root's umask may be 027).
umask 022

# --- where to install: "/" for real, any other directory for a dry run into it ---
[ -d "$ROOT" ] || mkdir -p "$ROOT"
ROOT=$(cd "$ROOT" && pwd -P)
if [ "$ROOT" = / ]; then
    R=          # prefix of every path
    DRY=0
    [ "$(id -u)" = 0 ] || die "run it as root, or use --root DIR for a trial install"
else
    R=$ROOT
    DRY=1
fi

# --- the source tree ---
if [ -z "$SOURCE" ]; then
    SOURCE=$(dirname "$0")/..
fi
SOURCE=$(cd "$SOURCE" && pwd -P) || die "no such source directory"
for f in pyproject.toml systemd/evcp.service config/evcp.example.toml; do
    [ -f "$SOURCE/$f" ] || die "$SOURCE is not an evcp source tree (no $f); use --source DIR"
done

. "$(dirname "$0")/lib.sh"

# Users and groups of the target: the machine's, or those in $ROOT/etc when installing there.
group_exists() {
    if [ "$DRY" = 1 ]; then
        grep -q "^$1:" "$R/etc/group" 2>/dev/null
    else
        getent group "$1" >/dev/null
    fi
}
user_exists() {
    if [ "$DRY" = 1 ]; then
        grep -q "^$1:" "$R/etc/passwd" 2>/dev/null
    else
        getent passwd "$1" >/dev/null
    fi
}

ARCH=$(uname -m)
case "$ARCH" in
    aarch64|armv7l|armv6l) ON_PI=1 ;;
    *) ON_PI=0 ;;
esac

# --- 1. groups and the service user ---
for group in $GROUPS_NEEDED; do
    if group_exists "$group"; then
        say "group $group: exists"
    else
        step "group $group: created" groupadd --system "$group"
    fi
done

GROUP_LIST=$(echo "$GROUPS_NEEDED" | tr ' ' ',')
NOLOGIN=/usr/sbin/nologin
[ -x "$NOLOGIN" ] || [ "$DRY" = 1 ] || NOLOGIN=/bin/false
if user_exists "$USER_NAME"; then
    # Adds groups the user may lack (an older install); keeps the others.
    step "user $USER_NAME: exists, in groups $GROUP_LIST" \
        usermod --append --groups "$GROUP_LIST" "$USER_NAME"
else
    # Its own group evcp (the config's group); reused if left over from an earlier install.
    primary=--user-group
    group_exists "$USER_NAME" && primary="--gid $USER_NAME"
    # shellcheck disable=SC2086 # $primary is one or two words
    step "user $USER_NAME: created (system user, no login, home $STATE_DIR, groups $GROUP_LIST)" \
        useradd --system $primary --groups "$GROUP_LIST" \
        --home-dir "$STATE_DIR" --no-create-home --shell "$NOLOGIN" \
        --comment "evcp charge-point controller" "$USER_NAME"
fi

# --- 2. Debian packages: venv support, and the Pi's GPIO/SPI bindings ---
if [ "$WITH_APT" = 1 ]; then
    packages=
    [ "$WITH_VENV" = 1 ] && packages="python3-venv"
    # python3-rpi-lgpio: the RPi.GPIO API on lgpio, which works on a Pi 5 too (Debian's
    # python3-rpi.gpio does not).
    [ "$ON_PI" = 1 ] && packages="$packages python3-lgpio python3-rpi-lgpio python3-spidev"
    missing=
    for package in $packages; do
        if [ "$DRY" = 1 ]; then
            missing="$missing $package"
        elif command -v dpkg-query >/dev/null 2>&1 &&
                ! dpkg-query -W -f '${Status}' "$package" 2>/dev/null | grep -q 'ok installed'; then
            missing="$missing $package"
        fi
    done
    if [ -z "$missing" ]; then
        say "packages: nothing to install"
    elif [ "$DRY" = 0 ] && ! command -v apt-get >/dev/null 2>&1; then
        say "packages: not a Debian system; make sure these are installed:$missing"
    else
        export DEBIAN_FRONTEND=noninteractive
        system apt-get update -qq
        # python3-lgpio comes from the Raspberry Pi OS archive; a plain Debian lacks it.
        available=
        for package in $missing; do
            if [ "$DRY" = 1 ] || apt-cache show "$package" >/dev/null 2>&1; then
                available="$available $package"
            else
                say "packages: $package is not in the apt sources; pip installs it from PyPI instead"
            fi
        done
        if [ -n "$available" ]; then
            # shellcheck disable=SC2086 # a list of package names
            step "packages: installed$available" apt-get install -y -qq --no-install-recommends $available
        fi
    fi
fi

# --- 3. the venv and the evcp package ---
if [ "$WITH_VENV" = 1 ]; then
    "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null ||
        die "$PYTHON is missing or older than 3.11 (use --python PY)"
    want=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
    have=$("$R$VENV/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || true)
    mkdir -p "$R${VENV%/*}"
    if [ -z "$have" ]; then
        # New, or broken (e.g. its Python was removed): start from scratch.
        "$PYTHON" -m venv --clear --system-site-packages "$R$VENV"
        say "venv $VENV: created with --system-site-packages (Python $want)"
    elif [ "$have" != "$want" ]; then
        # A distribution upgrade changed Python: packages built for the old one are useless.
        "$PYTHON" -m venv --clear --system-site-packages "$R$VENV"
        say "venv $VENV: re-created for Python $want (was $have)"
    else
        # Refreshes pyvenv.cfg (keeps system site packages on) and keeps what is installed.
        "$PYTHON" -m venv --system-site-packages "$R$VENV"
        say "venv $VENV: reused (Python $have)"
    fi

    # pip builds in the source tree; build from a copy so that a checkout owned by a user
    # gets no root-owned build/ or *.egg-info.
    STAGE=$(mktemp -d)
    trap 'rm -rf "$STAGE"' EXIT
    (cd "$SOURCE" && tar -cf - --exclude=./.git --exclude=./.venv --exclude=./build \
        --exclude='*.egg-info' --exclude=__pycache__ --exclude=./.pytest_cache \
        --exclude=./.hypothesis --exclude=./.bench-state .) | (cd "$STAGE" && tar -xf -)
    target=$STAGE
    extra=
    if [ "$ON_PI" = 1 ]; then
        target="${STAGE}[pi]"
        extra="[pi]"
    fi
    # --upgrade: a re-run replaces the installed evcp even when the version is unchanged;
    # dependencies are only upgraded when the new evcp needs it.
    "$R$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade "$target"
    version=$("$R$VENV/bin/python" -c 'from importlib.metadata import version; print(version("evcp"))')
    say "package: evcp $version$extra installed from $SOURCE into $VENV"
    if [ -n "$R" ]; then
        # pip wrote "#!$R$VENV/bin/python" into the scripts (and activate names $R$VENV):
        # once the tree is deployed at / they must name the deployed path.
        rewritten=0
        for script in "$R$VENV"/bin/*; do
            [ -f "$script" ] && [ ! -L "$script" ] || continue
            grep -q "$R$VENV" "$script" 2>/dev/null || continue
            sed "s|$R$VENV|$VENV|g" "$script" >"$script.new"
            chmod --reference="$script" "$script.new" 2>/dev/null || chmod 0755 "$script.new"
            mv "$script.new" "$script"
            rewritten=$((rewritten + 1))
        done
        say "venv $VENV: $rewritten script(s) point to $VENV/bin/python (the deployed path)"
    fi

    mkdir -p "$R${LINK%/*}"
    if [ -L "$R$LINK" ] && [ "$(readlink "$R$LINK")" = "$VENV/bin/evcp" ]; then
        say "command $LINK: links to $VENV/bin/evcp"
    elif [ -e "$R$LINK" ] || [ -L "$R$LINK" ]; then
        say "command $LINK: left alone (not ours); use $VENV/bin/evcp"
    else
        ln -s "$VENV/bin/evcp" "$R$LINK"
        say "command $LINK: linked to $VENV/bin/evcp"
    fi
else
    say "venv $VENV: skipped (--no-venv)"
fi

# --- 4. configuration: never overwrite the installer's file ---
mkdir -p "$R$CONF_DIR"
chmod 0750 "$R$CONF_DIR"
system chown "root:$USER_NAME" "$CONF_DIR"
if [ -e "$R$CONF_FILE" ]; then
    say "config $CONF_FILE: exists, left unchanged"
else
    cp "$SOURCE/config/evcp.example.toml" "$R$CONF_FILE.new"
    chmod 0640 "$R$CONF_FILE.new"
    mv "$R$CONF_FILE.new" "$R$CONF_FILE"
    system chown "root:$USER_NAME" "$CONF_FILE"
    say "config $CONF_FILE: created from config/evcp.example.toml (root:$USER_NAME 0640): edit it"
fi
# The example of this version, to compare with after an upgrade (new keys, new defaults).
cp "$SOURCE/config/evcp.example.toml" "$R$CONF_DIR/evcp.example.toml"
chmod 0640 "$R$CONF_DIR/evcp.example.toml"
system chown "root:$USER_NAME" "$CONF_DIR/evcp.example.toml"
say "config $CONF_DIR/evcp.example.toml: the example of this version"

# --- 5. state directory (systemd's StateDirectory= would create it too, at first start) ---
mkdir -p "$R$STATE_DIR"
chmod 0750 "$R$STATE_DIR"
system chown "$USER_NAME:$USER_NAME" "$STATE_DIR"
say "state $STATE_DIR: $USER_NAME:$USER_NAME 0750"

# --- 6. the systemd unit: enabled, not started (the config needs editing first) ---
mkdir -p "$R${UNIT_FILE%/*}"
if cmp -s "$SOURCE/systemd/evcp.service" "$R$UNIT_FILE"; then
    say "unit $UNIT_FILE: up to date"
else
    cp "$SOURCE/systemd/evcp.service" "$R$UNIT_FILE.new"
    chmod 0644 "$R$UNIT_FILE.new"
    mv "$R$UNIT_FILE.new" "$R$UNIT_FILE"
    say "unit $UNIT_FILE: installed (local changes belong in: systemctl edit evcp)"
fi
if [ "$DRY" = 1 ] || [ -d /run/systemd/system ]; then
    step "systemd: reloaded" systemctl daemon-reload
else
    say "systemd: not running here, daemon-reload skipped"
fi
if [ "$DRY" = 0 ]; then
    systemctl enable evcp
    say "systemd: evcp enabled (starts at boot; not started now)"
elif command -v systemctl >/dev/null 2>&1; then
    # Offline, on the tree: the [Install] section's WantedBy= symlink below $ROOT.
    systemctl --root "$R" enable evcp >/dev/null 2>&1 ||
        die "systemctl --root $R enable evcp failed"
    say "systemd: evcp enabled in $R (systemctl --root; starts at boot, not started now)"
else
    say "systemd: no systemctl here to enable evcp in $R; on the target run: systemctl enable evcp"
fi

# --- 7. the Pi's config.txt: what the wiring needs, and strict GPIO release ---
CONFIG_TXT=
for candidate in /boot/firmware/config.txt /boot/config.txt; do
    if [ -f "$R$candidate" ]; then
        CONFIG_TXT=$candidate
        break
    fi
done
if [ -z "$CONFIG_TXT" ]; then
    say "config.txt: none in /boot/firmware or /boot (not a Raspberry Pi OS image?); add dtparam=strict_gpiod there on a Pi"
else
    has_line() {
        grep -Eq "^[[:space:]]*($1)[[:space:]]*(#.*)?\$" "$R$CONFIG_TXT"
    }
    if has_line 'dtparam=strict_gpiod(=on)?'; then
        say "config.txt $CONFIG_TXT: dtparam=strict_gpiod present"
    elif [ "$WITH_CONFIG_TXT" = 1 ]; then
        cp -p "$R$CONFIG_TXT" "$R$CONFIG_TXT.evcp-backup"
        {
            echo
            echo "# evcp: release a GPIO line to its default (input, pulled) when the process that drove"
            echo "# it ends, so a contactor relay never stays energised after a crash (takes effect at boot)."
            echo "[all]"
            echo "dtparam=strict_gpiod"
        } >>"$R$CONFIG_TXT"
        say "config.txt $CONFIG_TXT: dtparam=strict_gpiod added (backup: $CONFIG_TXT.evcp-backup); reboot to apply"
    else
        say "config.txt $CONFIG_TXT: WARNING: no dtparam=strict_gpiod: a GPIO output keeps its level when evcp dies (--no-config-txt)"
    fi
    has_line 'dtparam=spi=on' ||
        say "config.txt $CONFIG_TXT: WARNING: no dtparam=spi=on: the RFID reader and an ADC pilot/PP need SPI"
    has_line 'dtoverlay=pwm(-2chan)?([,:].*)?' ||
        say "config.txt $CONFIG_TXT: WARNING: no dtoverlay=pwm or pwm-2chan: the pilot PWM needs one (e.g. dtoverlay=pwm,pin=18,func=2)"
    has_line 'enable_uart=1|dtparam=uart0(=on)?|dtoverlay=uart[0-5](-pi5)?([,:].*)?' ||
        say "config.txt $CONFIG_TXT: note: no enable_uart=1 / dtparam=uart0=on: needed only for an RS-485 HAT on the Pi's UART"
fi

# --- 8. the kernel (hardware) watchdog through systemd, only when asked ---
WATCHDOG_DROPIN=/etc/systemd/system.conf.d/evcp-watchdog.conf
if [ "$KERNEL_WATCHDOG" = 1 ]; then
    mkdir -p "$R${WATCHDOG_DROPIN%/*}"
    cat >"$R$WATCHDOG_DROPIN.new" <<'WATCHDOG'
# Written by evcp's install.sh --kernel-watchdog. systemd feeds the hardware watchdog
# (/dev/watchdog, bcm2835-wdt: at most about 15 s); a hung kernel or PID 1 reboots the Pi.
# The reboot also resets the GPIO functions to inputs (the relay driver drops).
[Manager]
RuntimeWatchdogSec=14s
RebootWatchdogSec=2min
WATCHDOG
    chmod 0644 "$R$WATCHDOG_DROPIN.new"
    mv "$R$WATCHDOG_DROPIN.new" "$R$WATCHDOG_DROPIN"
    say "kernel watchdog: $WATCHDOG_DROPIN written (RuntimeWatchdogSec=14s; active after reboot or systemctl daemon-reexec)"
elif [ -f "$R$WATCHDOG_DROPIN" ] || grep -Rqs '^[[:space:]]*RuntimeWatchdogSec=[1-9]' "$R/etc/systemd/system.conf" "$R/etc/systemd/system.conf.d"; then
    say "kernel watchdog: RuntimeWatchdogSec is set"
else
    say "kernel watchdog: not set up (a hung kernel is not reset); --kernel-watchdog writes $WATCHDOG_DROPIN"
fi

# --- what next ---
echo
if [ "$DRY" = 0 ] && systemctl is-active --quiet evcp 2>/dev/null; then
    echo "evcp is running the version it was started with. To switch to this one:"
    echo "  systemctl restart evcp   (opens the contactors; running transactions are stopped)"
else
    echo "Next steps:"
    echo "  1. edit $CONF_FILE (charge_point.id, ocpp.csms_url, wiring, secrets)"
    echo "  2. sudo -u $USER_NAME evcp config check $CONF_FILE"
    echo "  3. systemctl start evcp"
    echo "  4. journalctl -u evcp -f"
fi
