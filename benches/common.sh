# shellcheck shell=bash
# Shell helpers shared by the benchmark scripts (sourced; they define `log` themselves).

# CPU-seconds the whole machine has spent busy (user, nice, system, irq, softirq) since boot.
busy_s() { awk '/^cpu / {printf "%.2f\n", ($2 + $3 + $4 + $7 + $8) / 100}' /proc/stat; }

# wait_idle: waits (up to QUIET_MAX seconds, default 300) until the machine is idle — less than
# 0.1 of a core busy over 2 seconds — so that other work does not skew the measurements.
wait_idle() {
    local waited=0 b0 b1 busy
    while :; do
        b0=$(busy_s); sleep 2; b1=$(busy_s)
        busy=$(awk -v a="$b0" -v b="$b1" 'BEGIN {printf "%.2f", (b - a) / 2}')
        awk -v x="$busy" 'BEGIN {exit !(x < 0.1)}' && return 0
        waited=$((waited + 2))
        if [ "$waited" -ge "${QUIET_MAX:-300}" ]; then
            log "machine still busy ($busy cores used by other processes); measuring anyway"
            return 0
        fi
        [ $((waited % 20)) -eq 0 ] && log "waiting for other processes to go quiet ($busy cores busy)"
    done
}

# describe_machine DIR: sets CPU_MODEL, NPROC, MEM, KERNEL and DISK (free space where DIR lives)
# for the reports.
# shellcheck disable=SC2034 # the callers read them
describe_machine() {
    CPU_MODEL=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
    NPROC=$(nproc)
    MEM=$(free -h | awk '/^Mem:/ {print $2 " total, " $7 " available"}')
    KERNEL=$(uname -sr)
    DISK=$(df -h "$1" | awk 'NR == 2 {print $4 " free of " $2 " on " $1 " (" $6 ")"}')
}
