#!/bin/sh
# halab: rendered by provision/ (keepalived.track_file), do not edit
set -u
fifo=/run/haproxy/alive
track=/run/keepalived/haproxy.track
state=

say() {  # $1: what the track file says (0 serves, 1 does not), $2: why, for the log
    [ "$state" = "$1" ] && return 0
    state=$1
    echo "$1" > "$track"
    echo "haproxy-watch: $2: $track says $1"
}

listening() {
    [ -n "$(ss -Hltn "sport = :6443")" ]
}

mkdir -p "${fifo%/*}" "${track%/*}"
[ -p "$fifo" ] || mkfifo "$fifo" 2>/dev/null || [ -p "$fifo" ] || exit 1
# Not serving now: say so at once (a watcher restarted while HAProxy is up says nothing
# until it knows, so keepalived sees no blip).
listening || say 1 "HAProxy does not listen on :6443"
while :; do
    exec 4<"$fifo"  # blocks until a HAProxy holds the FIFO: one has started
    until listening; do
        sleep 0.02
    done
    say 0 "HAProxy listens on :6443"
    cat <&4 > /dev/null  # end-of-file: every HAProxy that held the FIFO has exited
    exec 4<&-
    say 1 "HAProxy exited"
done
