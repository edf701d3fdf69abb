# Shared by install.sh and uninstall.sh (sourced, not run). Needs $DRY: 1 = only print
# the commands that would change the machine outside --root.

say() {
    echo "$*"
}

# Commands that change the machine outside $ROOT: run them, or only print them (quoted
# like a shell command).
system() {
    if [ "$DRY" = 1 ]; then
        line=would:
        for arg in "$@"; do
            case "$arg" in
                ''|*[!A-Za-z0-9_,./:=@%+-]*)
                    arg="'$(printf '%s' "$arg" | sed "s/'/'\\\\''/g")'" ;;
            esac
            line="$line $arg"
        done
        echo "$line"
    else
        "$@"
    fi
}

# step MESSAGE COMMAND...: one step done by a system command; prints MESSAGE once it ran, or
# only the "would:" line.
step() {
    message=$1
    shift
    system "$@"
    [ "$DRY" = 1 ] || say "$message"
}
