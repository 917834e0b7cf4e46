#!/bin/sh
# CPU of chat4all-tui idling against the live stack: runs the dashboard in a detached tmux
# session (160x45) at --interval 1s, waits WARMUP seconds, then reads utime+stime of the process
# from /proc/PID/stat over SECONDS seconds. Prints the share of one core.
# Usage: CHAT4ALL_HOME=... tui/bench/idle_cpu.sh [SECONDS=30] [WARMUP=5]
set -eu
secs=${1:-30}
warmup=${2:-5}
root=$(cd "$(dirname "$0")/../.." && pwd)
tui=${CHAT4ALL_TUI:-$root/target/debug/chat4all-tui}
sock="chat4all-tui-bench-$$"
tmux -L "$sock" new-session -d -s bench -x 160 -y 45 "exec '$tui' --interval 1s"
trap 'tmux -L "$sock" kill-server 2>/dev/null || true' EXIT
sleep "$warmup"
pid=$(tmux -L "$sock" display-message -p -t bench '#{pane_pid}')
ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
hz=$(getconf CLK_TCK)
t0=$(ticks); s0=$(date +%s.%N)
sleep "$secs"
t1=$(ticks); s1=$(date +%s.%N)
awk -v a="$t0" -v b="$t1" -v s0="$s0" -v s1="$s1" -v hz="$hz" -v pid="$pid" 'BEGIN {
  cpu = (b - a) / hz; wall = s1 - s0;
  printf "chat4all-tui pid %d: %.2f s CPU over %.1f s wall = %.2f%% of one core\n", pid, cpu, wall, 100 * cpu / wall }'
