#!/usr/bin/env bash
# The physical backup benchmark: `pgkeep backup physical` and `pgkeep restore --pgdata` against
# pgBackRest and a plain `pg_basebackup | zstd` pipe, side by side in one run on one throwaway
# PostgreSQL cluster holding a pgbench database, each command under /usr/bin/time -v. Appends (or
# replaces) the section "Physical backup and restore" of docs/performance.md with the machine,
# the commands, the numbers and the goals met or missed.
#
#   benches/physical.sh              # from anywhere, as root or as a normal user; ~8 min here
#
# Environment (all optional):
#   OUT=path          the report to append to (default: docs/performance.md of this checkout)
#   BENCH_DIR=dir     scratch directory (default: $TMPDIR or /tmp); holds the cluster (~2.5 GB of
#                     data + up to ~4 GB of WAL while pgbench loads it), two repositories, the
#                     pipe's file and one restored data directory at a time (~10 GB at most);
#                     removed at the end
#   SCALE=170         pgbench scale factor (170 = 17 million accounts, ~2.5 GB)
#   RUNS=3            how many times each measurement is repeated (the tables show the median)
#   TOOLS="pgkeep pgbackrest pipe"   which of the three to run (all three for the report's goals)
#   PGBIN=dir         PostgreSQL binaries (default /usr/lib/postgresql/15/bin)
#   PGKEEP_BIN=path   measure this pgkeep binary instead of building target/release/pgkeep
#   QUIET_MAX=120     longest wait (s) for an idle machine before each measurement
#
# Needs: cargo, jq, zstd, tar, GNU time (/usr/bin/time; `apt-get install -y time`), pgbackrest
# (`apt-get install -y pgbackrest`), PostgreSQL 15 server and client binaries in $PGBIN. initdb and
# postgres refuse to run as root: as root, the cluster runs as the `postgres` OS user (runuser) in
# a directory it owns, and so does every measured command, because the server's archive_command
# (also the postgres user) writes into the same repositories.
# Single-quoted `bash -c` scripts and jq programs are expanded by bash and jq, not here:
# shellcheck disable=SC2016
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=${OUT:-$ROOT/docs/performance.md}
SCALE=${SCALE:-170}
RUNS=${RUNS:-3}
TOOLS=${TOOLS:-pgkeep pgbackrest pipe}
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
QUIET_MAX=${QUIET_MAX:-120}
SECTION="## Physical backup and restore"
BASE=${BENCH_DIR:-${TMPDIR:-/tmp}}

log() { printf '[%s] %s\n' "$(date +%T)" "$*" >&2; }
die() { echo "physical.sh: $*" >&2; exit 1; }
want() { case " $TOOLS " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
for tool in $TOOLS; do
    case $tool in pgkeep | pgbackrest | pipe) ;; *) die "TOOLS: unknown tool $tool (pgkeep, pgbackrest, pipe)" ;; esac
done

for tool in cargo jq zstd tar awk flock; do
    command -v "$tool" >/dev/null || die "$tool is required"
done
[ -x /usr/bin/time ] || die "GNU time is required: apt-get install -y time"
for tool in initdb pg_ctl postgres pg_basebackup pgbench psql; do
    [ -x "$PGBIN/$tool" ] || die "$PGBIN/$tool not found (set PGBIN)"
done
if want pgbackrest; then
    PGBACKREST=$(command -v pgbackrest) || die "pgbackrest is required: apt-get install -y pgbackrest (or leave it out of TOOLS)"
fi
if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 || die "as root, the cluster runs as the postgres OS user, which does not exist"
    AS_PG=(runuser -u postgres --)
else
    AS_PG=()
fi
# as_pg CMD...: runs CMD as the owner of the cluster (the postgres OS user when root).
as_pg() { "${AS_PG[@]}" "$@"; }

# One run at a time: a second one would measure the first. Clusters and directories left by a run
# that was killed (no EXIT trap ran) are stopped and removed by the next one.
exec 9>"$BASE/pgkeep-physical.lock"
flock -n 9 || die "another benches/physical.sh is running (lock $BASE/pgkeep-physical.lock)"
for stale in "$BASE"/pgkeep-physical.*/; do
    [ -d "$stale" ] || continue
    for pid_file in "$stale"pgdata/postmaster.pid "$stale"restore/*/postmaster.pid; do
        [ -f "$pid_file" ] || continue
        log "stopping a cluster left by an earlier run: ${pid_file%/postmaster.pid}"
        as_pg "$PGBIN/pg_ctl" -D "${pid_file%/postmaster.pid}" -m immediate -w stop >/dev/null 2>&1 || true
    done
    rm -rf "$stale"
done

WORK=$(mktemp -d "$BASE/pgkeep-physical.XXXXXX")
PGDATA_DIR=$WORK/pgdata
R=$WORK/restore        # restored data directories, one at a time
F=$WORK/files          # the pipe's backup file
STARTED_DIRS=()
cleanup() {
    local dir
    for dir in "${STARTED_DIRS[@]}"; do
        if [ -f "$dir/postmaster.pid" ]; then
            as_pg "$PGBIN/pg_ctl" -D "$dir" -m immediate -w stop >/dev/null 2>&1 || true
        fi
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------------------------------------
BUILD_SECONDS=0
if want pgkeep; then
    if [ -n "${PGKEEP_BIN:-}" ]; then
        log "using $PGKEEP_BIN (PGKEEP_BIN; not built)"
        SOURCE_BIN=$PGKEEP_BIN
    else
        log "building (cargo build --release -p pgkeep)"
        build_start=$(date +%s)
        (cd "$ROOT" && cargo build --release -p pgkeep --quiet)
        BUILD_SECONDS=$(($(date +%s) - build_start))
        TARGET_DIR=$(cd "$ROOT" && cargo metadata --format-version 1 --no-deps | jq -r .target_directory)
        SOURCE_BIN=$TARGET_DIR/release/pgkeep
    fi
    # A copy: readable by the postgres user, and not replaced by a concurrent build mid-run.
    mkdir -p "$WORK/bin"
    cp "$SOURCE_BIN" "$WORK/bin/pgkeep"
    chmod 755 "$WORK/bin" "$WORK/bin/pgkeep"
    PGKEEP=$WORK/bin/pgkeep
    help=$("$PGKEEP" backup --help 2>&1 || true)
    grep -q physical <<<"$help" || die "this pgkeep has no \`backup physical\` yet ($("$PGKEEP" --version)); run with TOOLS=\"pgbackrest pipe\""
fi
START=$(date +%s)

# ---------------------------------------------------------------------------------------------
# A throwaway cluster on a free loopback port, owned by the postgres OS user when run as root.
chmod 755 "$WORK"
mkdir -p "$PGDATA_DIR" "$WORK/sock" "$F" "$R" "$WORK/tmp" "$WORK/pgkeep-repo" "$WORK/pgbackrest"
[ "$(id -u)" = 0 ] && chown postgres: "$PGDATA_DIR" "$WORK/sock" "$F" "$R" "$WORK/tmp" "$WORK/pgkeep-repo" "$WORK/pgbackrest"
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
free_port() {
    local p=$1
    while ! port_free "$p"; do p=$((p + 1)); done
    echo "$p"
}
PORT=$(free_port 55532)

log "initdb + start PostgreSQL on 127.0.0.1:$PORT"
as_pg "$PGBIN/initdb" -D "$PGDATA_DIR" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 --no-sync >"$WORK/initdb.log" 2>&1 \
    || { cat "$WORK/initdb.log" >&2; exit 1; }
# In postgresql.conf, not on the command line: archive_command changes below with ALTER SYSTEM,
# which a -c option would override. While pgbench loads the database, the archiver throws the WAL
# away (/bin/true): archiving the load is not what is measured.
cat >>"$PGDATA_DIR/postgresql.conf" <<EOF

# benches/physical.sh
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = '$WORK/sock'
shared_buffers = 1GB
max_wal_size = 4GB
max_connections = 20
wal_level = replica
archive_mode = on
archive_command = '/bin/true'
EOF
as_pg "$PGBIN/pg_ctl" -D "$PGDATA_DIR" -l "$WORK/sock/server.log" -w -t 60 start >/dev/null \
    || { cat "$WORK/sock/server.log" >&2; exit 1; }
STARTED_DIRS+=("$PGDATA_DIR")
PM_PID=$(head -1 "$PGDATA_DIR/postmaster.pid")

# Every client (pgkeep, pg_basebackup, psql) connects through the environment.
export PGHOST=127.0.0.1 PGPORT=$PORT PGUSER=postgres PGDATABASE=postgres
unset PGPASSWORD PGSERVICE PGPASSFILE PGKEEP_CONFIG PGKEEP_CLUSTER PGKEEP_REPO PGBACKREST_CONFIG
export TMPDIR=$WORK/tmp
cd "$WORK"                   # no ./pgkeep.toml from the caller's directory
sql() { "$PGBIN/psql" -X -q -At -v ON_ERROR_STOP=1 -d "${2:-postgres}" -c "$1"; }

log "pgbench -i -s $SCALE bench"
sql "CREATE DATABASE bench"
init_start=$(date +%s)
"$PGBIN/pgbench" -i -q -s "$SCALE" bench >"$WORK/pgbench.log" 2>&1 || { cat "$WORK/pgbench.log" >&2; exit 1; }
INIT_SECONDS=$(($(date +%s) - init_start))
sql "CHECKPOINT"
DB_BYTES=$(sql "SELECT pg_database_size('bench')")
DB_PRETTY=$(sql "SELECT pg_size_pretty(pg_database_size('bench'))")
ACCOUNTS=$(sql "SELECT count(*) FROM pgbench_accounts" bench)
SERVER_VERSION=$(sql "SHOW server_version")
SYSID=$(sql "SELECT system_identifier FROM pg_control_system()")
log "bench: $DB_PRETTY ($DB_BYTES bytes), $ACCOUNTS accounts"

# ---------------------------------------------------------------------------------------------
# The two repositories, and one archive_command feeding both: every segment reaches both archives
# (each tool restores from its own), and every backup — whichever tool — waits at its end for
# the same two pushes of its last segment (pg_basebackup -X none and pgBackRest both wait for it).
ARCHIVERS=()
if want pgkeep; then
    cat >"$WORK/pgkeep.toml" <<EOF
[repository]
url = "file://$WORK/pgkeep-repo"
cluster = "bench"

[postgres]
conninfo = "host=127.0.0.1 port=$PORT user=postgres dbname=postgres"
bin-dir = "$PGBIN"

[compression]
# zstd -1 -T2, as the pipe
level = 1
threads = 2

[wal]
archive = true
EOF
    chmod 644 "$WORK/pgkeep.toml"
    ARCHIVERS+=("$PGKEEP wal-push --config $WORK/pgkeep.toml %p")
fi
if want pgbackrest; then
    PGBR_CONF=$WORK/pgbackrest.conf
    cat >"$PGBR_CONF" <<EOF
[global]
repo1-path=$WORK/pgbackrest/repo
repo1-bundle=y
repo1-retention-full=100
compress-type=zst
compress-level=1
process-max=2
start-fast=y
archive-async=n
log-path=$WORK/pgbackrest/log
lock-path=$WORK/pgbackrest/lock
spool-path=$WORK/pgbackrest/spool
log-level-console=warn
log-level-file=info

[bench]
pg1-path=$PGDATA_DIR
pg1-port=$PORT
pg1-socket-path=$WORK/sock
pg1-user=postgres
EOF
    chmod 644 "$PGBR_CONF"
    PGBR=("$PGBACKREST" "--config=$PGBR_CONF" --stanza=bench)
    as_pg "${PGBR[@]}" stanza-create >"$WORK/pgbackrest-stanza.log" 2>&1 || { cat "$WORK/pgbackrest-stanza.log" >&2; exit 1; }
    ARCHIVERS+=("$PGBACKREST --config=$PGBR_CONF --stanza=bench archive-push %p")
fi
ARCHIVE_COMMAND=
for a in "${ARCHIVERS[@]}"; do
    ARCHIVE_COMMAND=${ARCHIVE_COMMAND:+$ARCHIVE_COMMAND && }$a
done
ARCHIVE_COMMAND=${ARCHIVE_COMMAND:-/bin/true}
sql "ALTER SYSTEM SET archive_command = '$ARCHIVE_COMMAND'"
sql "SELECT pg_reload_conf()" >/dev/null
sleep 1
[ "$(sql "SHOW archive_command")" = "$ARCHIVE_COMMAND" ] || die "archive_command did not change"

# archive_drained: waits (up to 120 s) until no segment waits for the archiver; fails on a backlog.
archive_drained() {
    local _i
    for _i in $(seq 240); do
        [ "$(sql "SELECT count(*) FROM pg_ls_archive_statusdir() WHERE name LIKE '%.ready'")" = 0 ] && return 0
        sleep 0.5
    done
    sql "SELECT * FROM pg_stat_archiver" >&2
    die "the archiver did not keep up (see $WORK/sock/server.log)"
}
log "first archived segment (archive_command: $ARCHIVE_COMMAND)"
sql "SELECT pg_switch_wal()" >/dev/null
sql "CHECKPOINT"
sql "SELECT pg_switch_wal()" >/dev/null
archive_drained
[ "$(sql "SELECT failed_count FROM pg_stat_archiver")" = 0 ] || { tail -20 "$WORK/sock/server.log" >&2; die "archive_command failed"; }

PGKEEP_CHECK=
if want pgkeep; then
    PGKEEP_CHECK=$("$PGKEEP" --config "$WORK/pgkeep.toml" --json check 2>&1 || true)
    echo "$PGKEEP_CHECK" >"$WORK/pgkeep-check.json"
fi
PGBR_CHECK=
if want pgbackrest; then
    PGBR_CHECK=$(as_pg "${PGBR[@]}" check 2>&1) || { echo "$PGBR_CHECK" >&2; die "pgbackrest check failed"; }
fi

# ---------------------------------------------------------------------------------------------
RESULTS=$WORK/results.jsonl
: >"$RESULTS"
CLK_TCK=$(getconf CLK_TCK)
PAGE_KIB=$(($(getconf PAGESIZE) / 1024))
# busy_s, wait_idle and describe_machine
# shellcheck source=benches/common.sh
. "$ROOT/benches/common.sh"
# CPU-seconds of the PostgreSQL server: the postmaster (with its exited children, which it reaps)
# and its live children (backends, walsenders, the archiver with the archive_commands it reaped).
server_cpu_s() {
    {
        awk '{print $14 + $15 + $16 + $17}' "/proc/$PM_PID/stat"
        for p in $(pgrep -P "$PM_PID"); do
            awk '{print $14 + $15 + $16 + $17}' "/proc/$p/stat" 2>/dev/null || true
        done
    } | awk -v hz="$CLK_TCK" '{s += $1} END {printf "%.2f\n", s / hz}'
}
# wait_quiet: no segment left for the archiver, the server's dirty buffers written (CHECKPOINT),
# the page cache's dirty pages on disk (sync), then an idle machine (wait_idle, up to QUIET_MAX s).
wait_quiet() {
    archive_drained
    sql "CHECKPOINT"
    sync
    wait_idle
}
# sample_threads ROOT OUT: while ROOT runs, samples every 0.25 s the threads of ROOT's process tree
# from /proc (one grep and one awk per sample, to stay light on 2 cores), appending lines
# "pid tid comm seconds-since-start cpu_s rss_kib" (each thread's CPU so far; RSS is the process's).
sample_threads() {
    local root=$1 out=$2 t0=$EPOCHREALTIME
    : >"$out"
    while kill -0 "$root" 2>/dev/null; do
        grep -H '' /proc/[0-9]*/task/[0-9]*/stat 2>/dev/null \
            | awk -v root="$root" -v hz="$CLK_TCK" -v pg="$PAGE_KIB" -v now="$EPOCHREALTIME" -v t0="$t0" '
                {
                    split($0, parts, "/"); pid = parts[3]
                    line = $0; sub(/^[^:]*:/, "", line)
                    tid = line; sub(/ .*/, "", tid)
                    comm = line; sub(/^[0-9]+ \(/, "", comm); sub(/\) [^)]*$/, "", comm); gsub(/ /, "_", comm)
                    rest = line; sub(/^.*\) /, "", rest); split(rest, f, " ")
                    if (tid == pid) ppid[pid] = f[2]
                    tpid[tid] = pid; tcomm[tid] = comm; tcpu[tid] = (f[12] + f[13]) / hz; rss[pid] = f[22] * pg
                }
                END {
                    keep[root] = 1
                    do {
                        changed = 0
                        for (p in ppid) if (!(p in keep) && (ppid[p] in keep)) { keep[p] = 1; changed = 1 }
                    } while (changed)
                    for (t in tpid) if (tpid[t] in keep)
                        printf "%s %s %s %.2f %.2f %d\n", tpid[t], t, tcomm[t], now - t0, tcpu[t], rss[tpid[t]]
                }' >>"$out" || true
        sleep 0.25
    done
}

# timed NAME CMD...: after wait_quiet, runs CMD as the cluster's owner under /usr/bin/time -v
# (stdout to $WORK/out.txt) and records wall, user+sys CPU and max RSS as reported by time, the
# PostgreSQL server's CPU and the whole machine's busy time over the same interval, and from the
# samples the processes seen (with their largest RSS), as a JSON line tagged NAME.
timed() {
    local name=$1
    shift
    wait_quiet
    log "run: $name"
    local b0 b1 s0 s1 tpid spid
    b0=$(busy_s); s0=$(server_cpu_s)
    /usr/bin/time -v -o "$WORK/time.txt" "${AS_PG[@]}" "$@" >"$WORK/out.txt" 2>"$WORK/err.txt" &
    tpid=$!
    sample_threads "$tpid" "$WORK/threads.txt" &
    spid=$!
    if ! wait "$tpid"; then
        wait "$spid" || true
        cat "$WORK/err.txt" "$WORK/time.txt" >&2
        tail -20 "$WORK/sock/server.log" >&2
        die "$name failed"
    fi
    wait "$spid" || true
    b1=$(busy_s); s1=$(server_cpu_s)
    track_disk
    local wall user sys rss minflt ctx procs threads
    wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {n = split($2, t, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + t[i]; print s}' "$WORK/time.txt")
    user=$(awk -F': ' '/User time/ {print $2}' "$WORK/time.txt")
    sys=$(awk -F': ' '/System time/ {print $2}' "$WORK/time.txt")
    rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$WORK/time.txt")
    minflt=$(awk -F': ' '/Minor \(reclaiming a frame\) page faults/ {print $2}' "$WORK/time.txt")
    ctx=$(awk -F': ' '/Voluntary context switches/ {print $2}' "$WORK/time.txt")
    # Per process (time itself left out): first and last seen, the CPU of its threads (each
    # thread's largest sample), the largest RSS sampled; and the busiest threads.
    touch "$WORK/threads.txt"
    procs=$(awk -v skip="$tpid" '$1 != skip {
                if (!($1 in first)) first[$1] = $4
                last[$1] = $4; if ($1 == $2) name[$1] = $3
                if ($5 > tcpu[$2]) tcpu[$2] = $5; tp[$2] = $1
                if ($6 > rss[$1]) rss[$1] = $6 }
            END { for (t in tp) cpu[tp[t]] += tcpu[t]
                  for (p in first) printf "{\"pid\": %s, \"comm\": \"%s\", \"from_s\": %s, \"to_s\": %s, \"cpu_s\": %.2f, \"rss_mib\": %.1f}\n",
                      p, name[p], first[p], last[p], cpu[p], rss[p] / 1024 }' "$WORK/threads.txt" | jq -sc 'sort_by(.from_s)')
    threads=$(awk -v skip="$tpid" '$1 != skip { k = $1 " " $2; nm[k] = $3 "(" $1 ")"; if ($5 > cpu[k]) cpu[k] = $5 }
            END { for (k in cpu) if (cpu[k] >= 0.05) printf "%.2f\t%s\n", cpu[k], nm[k] }' "$WORK/threads.txt" \
        | sort -gr | head -8 | awk -F'\t' '{printf "%s%s: %s", (NR > 1 ? ", " : ""), $2, $1}')
    jq -nc --arg name "$name" --argjson wall "$wall" --argjson user "$user" --argjson sys "$sys" \
        --argjson rss "$rss" --argjson procs "$procs" --arg threads "$threads" \
        --argjson minflt "${minflt:-0}" --argjson ctx "${ctx:-0}" \
        --argjson server "$(awk -v a="$s0" -v b="$s1" 'BEGIN {printf "%.2f", b - a}')" \
        --argjson machine "$(awk -v a="$b0" -v b="$b1" 'BEGIN {printf "%.2f", b - a}')" \
        '{name: $name, wall_s: $wall, user_s: $user, sys_s: $sys, cpu_s: ((($user + $sys) * 100 | round) / 100),
          max_rss_mib: (($rss / 1024 * 10 | round) / 10), server_cpu_s: $server, machine_busy_s: $machine,
          minor_faults: $minflt, voluntary_switches: $ctx, processes: $procs, threads: $threads}' \
        | tee -a "$RESULTS" >&2
}
record() { jq -c "$@" | tee -a "$RESULTS" >&2; }
# The scratch directory's largest size seen after a run (bytes).
PEAK_DISK=0
track_disk() {
    local now
    now=$(du -sb "$WORK" 2>/dev/null | awk '{print $1}')
    [ "${now:-0}" -gt "$PEAK_DISK" ] && PEAK_DISK=$now
    return 0
}
dir_bytes() { du -sb "$1" | awk '{print $1}'; }
# check_restored KIND DIR: a restored data directory looks like the cluster's (PG_VERSION, the
# control file, backup_label, the bench database's files); records its size.
check_restored() {
    local kind=$1 dir=$2 f
    for f in PG_VERSION global/pg_control backup_label; do
        [ -f "$dir/$f" ] || die "$kind: $dir/$f missing after the restore"
    done
    local bench_oid
    bench_oid=$(sql "SELECT oid FROM pg_database WHERE datname = 'bench'")
    [ -d "$dir/base/$bench_oid" ] || die "$kind: $dir/base/$bench_oid (the bench database) missing"
    record -n --arg name "$kind-restored" --argjson bytes "$(dir_bytes "$dir")" \
        --argjson files "$(find "$dir" -type f | wc -l)" '{name: $name, bytes: $bytes, files: $files}'
}

# ---------------------------------------------------------------------------------------------
log "machine"
describe_machine "$WORK"
ZSTD_CLI=$(zstd --version | sed 's/^\*\*\* //; s/ \*\*\*$//')
PG_BASEBACKUP_VERSION=$("$PGBIN/pg_basebackup" --version)
TAR_VERSION=$(tar --version | head -1)
PGKEEP_VERSION=
want pgkeep && PGKEEP_VERSION=$("$PGKEEP" --version)
PGBR_VERSION=
want pgbackrest && PGBR_VERSION=$("$PGBACKREST" version)
GIT_REV=$(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo unknown)
GIT_DIRTY=
if (cd "$ROOT" && git status --porcelain 2>/dev/null | grep -q .); then GIT_DIRTY=" (with uncommitted changes)"; fi
PGDATA_BYTES=$(dir_bytes "$PGDATA_DIR")
WAL_BYTES=$(dir_bytes "$PGDATA_DIR/pg_wal")

# Warm cache: the database files are read once (an untimed pg_basebackup into /dev/null) so that
# every measured run finds them in the page cache, as the first one otherwise would not.
log "warming the page cache (pg_basebackup > /dev/null, untimed)"
as_pg bash -c 'set -o pipefail; "$0" -Ft -D - -X none --checkpoint=fast >/dev/null' "$PGBIN/pg_basebackup"

PIPE_FILE=$F/base.tar.zst
PK_LAST_ID=
# One function per tool and kind; each round runs the tools in a rotated order (round 1: pgkeep,
# pgbackrest, pipe; round 2: pgbackrest, pipe, pgkeep; ...), so that no tool always comes first
# after the previous round's files were removed.
backup_pgkeep() {
    timed pgkeep-backup "$PGKEEP" --config "$WORK/pgkeep.toml" --json backup physical
    cp "$WORK/out.txt" "$WORK/pgkeep-backup-$run.json"
    cp "$WORK/err.txt" "$WORK/pgkeep-backup-$run.err"
    PK_LAST_ID=$(jq -r '.id // empty' "$WORK/out.txt" 2>/dev/null || true)
    # What pgkeep stored: every stored_size in its manifest (the base backup's objects).
    record -n --arg name pgkeep-backup-size --argjson run "$run" \
        --argjson stored "$(jq '[.. | objects | .stored_size? // empty] | add // 0' "$WORK/out.txt" 2>/dev/null || echo 0)" \
        --argjson original "$(jq '[.. | objects | select(has("stored_size")) | .size? // empty] | add // 0' "$WORK/out.txt" 2>/dev/null || echo 0)" \
        '{name: $name, run: $run, stored_bytes: $stored, original_bytes: $original}'
}
backup_pgbackrest() {
    timed pgbackrest-backup "${PGBR[@]}" --type=full backup
    as_pg "${PGBR[@]}" --output=json info >"$WORK/pgbackrest-info.json"
    record --arg name pgbackrest-backup-size --argjson run "$run" \
        '{name: $name, run: $run, stored_bytes: .[0].backup[-1].info.repository.size, original_bytes: .[0].backup[-1].info.size, label: .[0].backup[-1].label}' \
        "$WORK/pgbackrest-info.json"
}
backup_pipe() {
    timed pipe-backup bash -c 'set -o pipefail; "$0" -Ft -D - -X none --checkpoint=fast | zstd -q -1 -T2 >"$1"' \
        "$PGBIN/pg_basebackup" "$PIPE_FILE"
    # The tar stream's size, once (decompressing it takes a few seconds).
    local original=null
    [ "$run" = "$RUNS" ] && original=$(zstd -q -dc "$PIPE_FILE" | wc -c)
    record -n --arg name pipe-backup-size --argjson run "$run" --argjson stored "$(stat -c %s "$PIPE_FILE")" \
        --argjson original "$original" \
        '{name: $name, run: $run, stored_bytes: $stored, original_bytes: $original}'
}
restore_pgkeep() {
    timed pgkeep-restore "$PGKEEP" --config "$WORK/pgkeep.toml" restore --pgdata "$R/pgkeep" --immediate
    cp "$WORK/out.txt" "$WORK/pgkeep-restore-$run.out"
    cp "$WORK/err.txt" "$WORK/pgkeep-restore-$run.err"
    check_restored pgkeep "$R/pgkeep"
    rm -rf "$R/pgkeep"
}
restore_pgbackrest() {
    as_pg mkdir -m 700 "$R/pgbackrest"
    timed pgbackrest-restore "${PGBR[@]}" "--pg1-path=$R/pgbackrest" restore
    check_restored pgbackrest "$R/pgbackrest"
    rm -rf "$R/pgbackrest"
}
restore_pipe() {
    timed pipe-restore bash -c 'set -o pipefail; mkdir -m 700 "$1" && zstd -q -dc "$0" | tar -xf - -C "$1"' "$PIPE_FILE" "$R/pipe"
    check_restored pipe "$R/pipe"
    rm -rf "$R/pipe"
}
read -r -a TOOL_LIST <<<"$TOOLS"
rotated() { # rotated ROUND: the tools in this round's order
    local n=${#TOOL_LIST[@]} i
    for ((i = 0; i < n; i++)); do
        printf '%s\n' "${TOOL_LIST[$(((i + $1 - 1) % n))]}"
    done
}
for kind in backup restore; do
    for run in $(seq "$RUNS"); do
        order=$(rotated "$run" | paste -sd' ')
        log "${kind}s, round $run of $RUNS: $order"
        for tool in $order; do
            "${kind}_$tool"
        done
    done
done

# ---------------------------------------------------------------------------------------------
# Beyond the timings: pgkeep's view of the repository, a verification, and one restored copy
# started for real (recovery through pgkeep wal-fetch up to the end of the last backup).
PK_LIST=
PK_VERIFY_WAL=
PK_START_OUT=
PK_START_RC=
PK_START_ACCOUNTS=
if want pgkeep; then
    log "pgkeep list, verify --wal, verify ID"
    PK_LIST=$("$PGKEEP" --config "$WORK/pgkeep.toml" list 2>&1 || true)
    PK_VERIFY_WAL=$(as_pg "$PGKEEP" --config "$WORK/pgkeep.toml" verify --wal 2>&1; echo "(exit $?)") || true
    if [ -n "$PK_LAST_ID" ]; then
        timed pgkeep-verify "$PGKEEP" --config "$WORK/pgkeep.toml" verify "$PK_LAST_ID"
    fi
    log "pgkeep restore --immediate --start (recovery through wal-fetch, untimed)"
    PORT2=$(free_port $((PORT + 1)))
    STARTED_DIRS+=("$R/started")
    set +e
    PK_START_OUT=$(as_pg "$PGKEEP" --config "$WORK/pgkeep.toml" restore --pgdata "$R/started" --immediate --start --port "$PORT2" 2>&1)
    PK_START_RC=$?
    set -e
    if [ "$PK_START_RC" = 0 ]; then
        PK_START_ACCOUNTS=$(PGPORT=$PORT2 sql "SELECT count(*) FROM pgbench_accounts" bench 2>&1 || true)
    fi
    as_pg "$PGBIN/pg_ctl" -D "$R/started" -m fast -w stop >/dev/null 2>&1 || true
    record -n --arg out "$PK_START_OUT" --arg rc "$PK_START_RC" --arg accounts "$PK_START_ACCOUNTS" \
        '{name: "pgkeep-restore-start", exit: $rc, accounts: $accounts, output: $out}'
    rm -rf "$R/started"
fi
# How pgkeep moves the bytes between itself and its child: one more backup and one more restore
# under strace (untimed), counting pgkeep's reads from pg_basebackup's pipe and its writes into
# tar's. io_stats FILE CALL prints "calls bytes eagain" for the file descriptor that carried the
# most bytes through CALL in pgkeep's own threads (not in the children it started).
io_stats() {
    awk -v call="$2" '
        function parse(c) { c = $0; sub(/^[0-9]+ +/, "", c); name = c; sub(/\(.*/, "", name); fd = c; sub(/^[a-z]+\(/, "", fd); sub(/,.*/, "", fd) }
        / execve\(/ { if ($0 !~ /pgkeep/) child[$1] = 1; next }
        /<unfinished \.\.\.>/ { if ($0 ~ /^[0-9]+ +(read|write)\([0-9]+,/) { parse(); pend[$1] = name " " fd } next }
        {
            if ($0 ~ /<\.\.\. (read|write) resumed>/) {
                if (!($1 in pend)) next
                split(pend[$1], pf, " "); name = pf[1]; fd = pf[2]; delete pend[$1]
            } else if ($0 ~ /^[0-9]+ +(read|write)\([0-9]+,/) {
                parse()
            } else next
            if (name != call || ($1 in child)) next
            ret = $0; sub(/.*= /, "", ret)
            if (ret ~ /^-1 EAGAIN/) { again[fd]++; next }
            ret += 0
            if (ret > 0) { n[fd]++; b[fd] += ret }
        }
        END { best = ""; for (k in b) if (best == "" || b[k] > b[best]) best = k
              if (best != "") printf "%d %d %d\n", n[best], b[best], again[best] + 0 }' "$1"
}
STRACE_READS=
STRACE_WRITES=
if want pgkeep && command -v strace >/dev/null; then
    log "strace: pgkeep's reads from pg_basebackup and writes into tar (one more backup and restore, untimed)"
    as_pg strace -f -qq -e trace=read,write,execve -o "$WORK/tmp/backup.strace" \
        "$PGKEEP" --config "$WORK/pgkeep.toml" -q backup physical >/dev/null
    as_pg strace -f -qq -e trace=read,write,execve -o "$WORK/tmp/restore.strace" \
        "$PGKEEP" --config "$WORK/pgkeep.toml" -q restore --pgdata "$R/strace" --immediate >/dev/null
    STRACE_READS=$(io_stats "$WORK/tmp/backup.strace" read)
    STRACE_WRITES=$(io_stats "$WORK/tmp/restore.strace" write)
    rm -rf "$R/strace" "$WORK"/tmp/*.strace
    read -r sr_n sr_b sr_e <<<"${STRACE_READS:-0 0 0}"
    read -r sw_n sw_b sw_e <<<"${STRACE_WRITES:-0 0 0}"
    record -n --argjson rn "$sr_n" --argjson rb "$sr_b" --argjson re "$sr_e" --argjson wn "$sw_n" --argjson wb "$sw_b" --argjson we "$sw_e" \
        '{name: "strace-io", backup_reads: $rn, backup_read_bytes: $rb, backup_read_eagain: $re, restore_writes: $wn, restore_write_bytes: $wb, restore_write_eagain: $we}'
fi
ARCHIVE_FAILURES=$(grep -c 'archive command failed' "$WORK/sock/server.log" || true)
ARCHIVER=$(sql "SELECT format('%s archived, %s failed', archived_count, failed_count) FROM pg_stat_archiver")
TOTAL_SECONDS=$(($(date +%s) - START))

# ---------------------------------------------------------------------------------------------
log "writing $OUT"
calc() { awk "BEGIN {printf \"$1\", $2}"; }
mb() { calc "%.1f" "$1 / 1000000"; }
has() { jq -se --arg name "$1" 'any(.[]; .name == $name)' "$RESULTS" >/dev/null; }
# median NAME: the run tagged NAME with the median wall time (the upper one of an even count).
median() { jq -sc --arg name "$1" '[.[] | select(.name == $name)] | sort_by(.wall_s) | .[length / 2 | floor]' "$RESULTS"; }
walls() { jq -sr --arg name "$1" '[.[] | select(.name == $name) | .wall_s] | join(", ")' "$RESULTS"; }
r() { median "$1" | jq -r "$2"; }
# last_of NAME FIELD: FIELD of the last record tagged NAME.
last_of() { jq -sr --arg name "$1" "[.[] | select(.name == \$name)] | last | $2" "$RESULTS"; }
# pgkeep_rss NAME: the largest RSS sampled for a process called pgkeep in the median run.
pgkeep_rss() { r "$1" '[.processes[] | select(.comm == "pgkeep") | .rss_mib] | max // "–"'; }
procs_line() {
    r "$1" '[.processes[] | select(.comm != "runuser") | "\(.comm) \(.from_s)–\(.to_s) s, \(.cpu_s) CPU s, \(.rss_mib) MiB"] | join("; ")'
}
row() { # row NAME LABEL [SIZE-RECORD]
    has "$1" || return 0
    local stored="–" ratio="–"
    if [ -n "${3:-}" ]; then
        local s o
        s=$(last_of "$3" .stored_bytes)
        o=$(last_of "$3" .original_bytes)
        stored="$(mb "$s") MB"
        [ "${o:-0}" != 0 ] && [ "$o" != null ] && ratio="$(calc "%.1f" "$o / $s"):1"
    fi
    median "$1" | jq -r --arg lbl "$2" --arg stored "$stored" --arg ratio "$ratio" --arg all "$(walls "$1")" --arg pk "$(pgkeep_rss "$1")" \
        '"| \($lbl) | **\(.wall_s)** | \($all) | \(.user_s) + \(.sys_s) = \(.cpu_s) | \(.server_cpu_s) | \(.machine_busy_s) | \(.max_rss_mib) | \($pk) | \($stored) | \($ratio) |"'
}
goal() { awk -v x="$1" -v lim="$2" 'BEGIN {print (x <= lim ? "**met**" : "**not met**")}'; }
pair_ratios() {
    jq -sr --arg a "$1" --arg b "$2" '[.[] | select(.name == $a) | .wall_s] as $x | [.[] | select(.name == $b) | .wall_s] as $y
        | [range(0; [($x | length), ($y | length)] | min) | ($x[.] / $y[.] * 100 | round / 100)] | join(", ")' "$RESULTS"
}

{
# Everything from an earlier run's section to the next level-2 heading (or the end) is replaced.
if [ -f "$OUT" ]; then
    awk -v s="$SECTION" '$0 == s {skip = 1; next} skip && /^## / {skip = 0} !skip' "$OUT" | sed -e :a -e '/^\n*$/{$d;N;ba' -e '}'
    echo
fi
cat <<EOF
$SECTION

\`pgkeep backup physical\` and \`pgkeep restore --pgdata\` next to pgBackRest and a plain
\`pg_basebackup | zstd\` pipe on one pgbench cluster, generated by \`benches/physical.sh\` on
$(date -u +%Y-%m-%d) at commit \`$GIT_REV\`$GIT_DIRTY${PGKEEP_VERSION:+ ($PGKEEP_VERSION)}. Rerun it with:

\`\`\`sh
benches/physical.sh            # builds, runs everything (~$((TOTAL_SECONDS / 60 + 1)) min here), replaces this section
\`\`\`

### Setup

| | |
|---|---|
| CPU | $CPU_MODEL, \`nproc\` = $NPROC |
| Memory | $MEM |
| Kernel | $KERNEL (a VM) |
| Disk | $DISK (one virtual disk for the cluster, both repositories, the pipe's file and the restores) |
| PostgreSQL | $SERVER_VERSION, a throwaway cluster on 127.0.0.1 on the same machine (\`initdb --locale=C.UTF-8\`; \`shared_buffers=1GB\`, \`max_wal_size=4GB\`, \`wal_level=replica\`, \`archive_mode=on\`, fsync on, the rest default) |
| Tools | $PG_BASEBACKUP_VERSION; ${PGBR_VERSION:-pgBackRest not run}; $ZSTD_CLI; $TAR_VERSION |
| Database | \`pgbench -i -s $SCALE\` (${INIT_SECONDS}s to create): \`pg_database_size('bench')\` = $DB_BYTES bytes ($DB_PRETTY), $ACCOUNTS accounts; the data directory $(mb "$PGDATA_BYTES") MB of which pg_wal $(mb "$WAL_BYTES") MB (not backed up) |

**WAL archiving.** One \`archive_command\` feeds both archives, so that each tool restores from its
own and every backup waits at its end for the same work (pg_basebackup \`-X none\`, hence pgkeep
and the pipe, and pgBackRest's archive check all wait until the backup's last segment is archived):

\`\`\`
archive_command = '${ARCHIVE_COMMAND//"$WORK"/\$WORK}'
\`\`\`

While pgbench loaded the database the archive_command was \`/bin/true\` (the load's WAL is not
what is measured); it was set as above, then the WAL switched and archived, before the first
backup. The archiver at the end (\`pg_stat_archiver\`, the load's segments through /bin/true
included): $ARCHIVER; "archive command failed" lines in the server log: ${ARCHIVE_FAILURES:-0}.

**Commands.** Each runs alone — before each the script waits until no segment waits for the
archiver, runs \`CHECKPOINT\` and \`sync\`, and waits until the machine is idle — under
\`/usr/bin/time -v\`, as the postgres OS user, connecting through \`PGHOST=127.0.0.1 PGPORT=$PORT PGUSER=postgres\`.
The cache is warm: the database was read once by an untimed \`pg_basebackup > /dev/null\`.

\`\`\`sh
# backups; each round runs the three in turn, the order rotated by one each round
pgkeep --config pgkeep.toml --json backup physical         # [compression] level = 1, threads = 2; repository file://\$WORK/pgkeep-repo
pgbackrest --config=pgbackrest.conf --stanza=bench --type=full backup
bash -c 'pg_basebackup -Ft -D - -X none --checkpoint=fast | zstd -q -1 -T2 > base.tar.zst'
# restores (the last backup of each), rotated the same way; the directory is removed after each
pgkeep --config pgkeep.toml restore --pgdata \$WORK/restore/pgkeep --immediate        # absent directory; not started
pgbackrest --config=pgbackrest.conf --stanza=bench --pg1-path=\$WORK/restore/pgbackrest restore   # empty directory (mkdir -m 700 untimed)
bash -c 'mkdir -m 700 DIR && zstd -q -dc base.tar.zst | tar -xf - -C DIR'                      # reference
\`\`\`

pgBackRest's configuration: \`repo1-bundle=y\`, \`compress-type=zst\`, \`compress-level=1\`,
\`process-max=2\`, \`start-fast=y\` (the equivalent of \`--checkpoint=fast\`), \`archive-async=n\`, a
local repository (\`repo1-path=\$WORK/pgbackrest/repo\`). All repositories, files and restores are on
the same disk as the cluster. Durability differs: pgkeep and pgBackRest fsync what they store in
their repositories, the pipe's \`>\` does not; \`pgkeep restore\` and \`tar -x\` leave the restored files
in the page cache (PostgreSQL fsyncs the data directory when it starts recovery from them).
Each restored directory is checked (\`PG_VERSION\`, \`global/pg_control\`, \`backup_label\`, the bench
database's directory) before it is removed. The list ran $RUNS times; the tables show, per command,
the run with the **median** wall time, and list every run's.

### Results

**CPU s** is what \`/usr/bin/time\` reports for the measured process and the children it waited for
(pg_basebackup under pgkeep, pgBackRest's local worker processes, both sides of a pipe). **Peak RSS**
is \`/usr/bin/time\`'s maximum resident set size: the largest *single* process of that tree, not their
sum. **pgkeep RSS** is the largest RSS sampled (every 0.25 s from \`/proc\`) of the \`pgkeep\` process
itself. **Server CPU s** is the PostgreSQL server's (postmaster, backends, the walsender that streams
pg_basebackup's tar, the archiver and its archive_commands), which \`time\` does not see; **machine
CPU s** is the whole machine's busy time over the run (\`/proc/stat\`), out of 2 × wall. Sizes in MB =
10^6 bytes; **ratio** = the original bytes (the tar stream; pgBackRest: the files) / stored.

| run | wall s (median) | all runs, wall s | CPU s (user + sys) | server CPU s | machine CPU s | peak RSS MiB | pgkeep RSS MiB | stored | ratio |
|---|---:|---|---:|---:|---:|---:|---:|---:|---:|
EOF
row pgkeep-backup "\`pgkeep backup physical\`" pgkeep-backup-size
row pgbackrest-backup "\`pgbackrest backup --type=full\`" pgbackrest-backup-size
row pipe-backup "\`pg_basebackup \| zstd -1 -T2\`" pipe-backup-size
row pgkeep-restore "\`pgkeep restore --immediate\` (not started)"
row pgbackrest-restore "\`pgbackrest restore\`"
row pipe-restore "\`zstd -dc \| tar -x\`"
row pgkeep-verify "\`pgkeep verify ID\` (pg_verifybackup on a scratch extraction)"
cat <<EOF

Where the time went (median run): each process of the tree with when it was first and last seen
(s after the start), its CPU s and its largest RSS, and the busiest threads (name(pid): CPU s),
sampled from \`/proc/PID/task\` every 0.25 s (the last ~0.25 s of a thread may be missing; runuser
and time left out). pgkeep's tokio threads are all called \`tokio-rt-worker\`; zstd's workers
carry the name of the thread that started them.

| run | processes | busiest threads | minor page faults |
|---|---|---|---:|
EOF
for name in pgkeep-backup pgbackrest-backup pipe-backup pgkeep-restore pgbackrest-restore pipe-restore; do
    has "$name" && echo "| $name | $(procs_line "$name") | $(r "$name" .threads) | $(r "$name" .minor_faults) |"
done
echo
if has pgkeep-backup && has pipe-backup; then
    PB=$(r pgkeep-backup .wall_s)
    PIPE=$(r pipe-backup .wall_s)
    B_RATIO=$(calc "%.3f" "$PB / $PIPE")
    PB_RSS=$(r pgkeep-backup .max_rss_mib)
    PR_RSS=$(r pgkeep-restore .max_rss_mib)
    MAX_RSS=$(jq -sr '[.[] | select(.name | startswith("pgkeep-")) | .max_rss_mib? // empty] | max' "$RESULTS")
    cat <<EOF
### Goals

| goal | measured (medians) | per round | |
|---|---|---|---|
| \`pgkeep backup physical\` within 1.1× the wall time of \`pg_basebackup \| zstd -1 -T2\` | $PB s / $PIPE s = $B_RATIO× | $(pair_ratios pgkeep-backup pipe-backup) | $(goal "$B_RATIO" 1.1) |
| pgkeep's peak RSS under 128 MiB | backup $PB_RSS MiB, restore $PR_RSS MiB (largest of any pgkeep run: $MAX_RSS MiB) | – | $(goal "$MAX_RSS" 128) |

EOF
    if has pgbackrest-backup; then
        echo "pgkeep against pgBackRest: backup $(calc "%.3f" "$PB / $(r pgbackrest-backup .wall_s)")×, restore $(calc "%.3f" "$(r pgkeep-restore .wall_s) / $(r pgbackrest-restore .wall_s)")× (wall, medians); against \`zstd -dc | tar -x\`: restore $(calc "%.3f" "$(r pgkeep-restore .wall_s) / $(r pipe-restore .wall_s)")×."
        echo
    fi
    # The interpretation: numbers pulled from the median runs, the reasoning written once.
    pcpu() { r "$1" "[.processes[] | select(.comm == \"$2\") | .cpu_s] | add // 0"; }
    TAR_BYTES=$(last_of pgkeep-backup-size .original_bytes)
    GIB=$(calc "%.2f" "$TAR_BYTES / 1073741824")
    PB_PK=$(pcpu pgkeep-backup pgkeep)
    PB_BB=$(pcpu pgkeep-backup pg_basebackup)
    PIPE_Z=$(pcpu pipe-backup zstd)
    PIPE_BB=$(pcpu pipe-backup pg_basebackup)
    PB_MACH=$(r pgkeep-backup .machine_busy_s)
    PIPE_MACH=$(r pipe-backup .machine_busy_s)
    PB_TOP=$(r pgkeep-backup '.threads | split(", ")[0]')
    PB_TOPS=$(r pgkeep-backup '.threads | split(", ")[0] | split(": ")[1] // "0"')
    PR=$(r pgkeep-restore .wall_s)
    PPR=$(r pipe-restore .wall_s)
    PR_PK=$(pcpu pgkeep-restore pgkeep)
    PR_TAR=$(pcpu pgkeep-restore tar)
    PPR_Z=$(pcpu pipe-restore zstd)
    PPR_TAR=$(pcpu pipe-restore tar)
    PR_MACH=$(r pgkeep-restore .machine_busy_s)
    PPR_MACH=$(r pipe-restore .machine_busy_s)
    STRACE_TEXT=
    if has strace-io; then
        kib() { calc "%.1f" "$1 / 1024"; }
        SR_N=$(last_of strace-io .backup_reads); SR_B=$(last_of strace-io .backup_read_bytes)
        SW_N=$(last_of strace-io .restore_writes); SW_B=$(last_of strace-io .restore_write_bytes)
        SW_E=$(last_of strace-io .restore_write_eagain)
        if [ "$SR_N" -gt 0 ] && [ "$SW_N" -gt 0 ]; then
            STRACE_TEXT=" Under \`strace -f\` (one more backup and restore, untimed), pgkeep read pg_basebackup's
output in $SR_N reads of $(kib "$((SR_B / SR_N))") KiB on average, and wrote the tar stream into tar's stdin in
$SW_N writes of $(kib "$((SW_B / SW_N))") KiB on average ($SW_E refused with EAGAIN: the pipe was full)."
        fi
    fi
    cat <<EOF
### Interpretation

**The database is extremely compressible** (pgbench's accounts are mostly a blank \`filler\`
column): the $GIB GiB tar stream is stored in $(mb "$(last_of pgkeep-backup-size .stored_bytes)") MB, so every command here
spends its time moving and hashing bytes, not compressing them, and runs for seconds. Between
rounds the same command varied by up to $(jq -sr '[group_by(.name)[] | select(length > 1 and (.[0] | has("wall_s"))) | (map(.wall_s) | max / min - 1) * 100] | (max // 0) | round' "$RESULTS") % (see "all runs"): the medians of $RUNS rounds are
compared, and each round's ratio is shown.

**Backup.** \`pgkeep backup physical\` took $PB s against $PIPE s for the pipe ($B_RATIO×). Both run the same
pg_basebackup ($PB_BB CPU-seconds under pgkeep, $PIPE_BB in the pipe) and zstd level 1 with 2 workers;
pgkeep's own process used $PB_PK CPU-seconds where the zstd CLI used $PIPE_Z. The difference is mostly
the sha256 of the original stream, which the pipe does not compute (about 0.5 s per GiB on one
core, see the pipeline benchmark above: ≈ $(calc "%.1f" "$GIB * 0.51") s here). The machine was busy $PB_MACH CPU-seconds
during pgkeep's backup, $(calc "%.2f" "$PB_MACH / $PB") of the 2 cores on average ($PIPE_MACH s, $(calc "%.2f" "$PIPE_MACH / $PIPE") cores for the pipe), and
pgkeep's busiest thread ($PB_TOP s) ran $(calc "%.0f" "100 * $PB_TOPS / $PB") % of the wall time: $(awk -v x="$B_RATIO" 'BEGIN {
    if (x <= 1.1) printf "the extra work fits beside pg_basebackup and the server on the second core and costs little wall time."
    else printf "the backup is not CPU-bound, its stages wait on one another, so the extra CPU work does not explain the whole gap." }')

**Restore.** \`pgkeep restore --immediate\` took $PR s against $PPR s for \`zstd -dc | tar -x\`. Both end
in GNU tar writing the files ($PR_TAR CPU-seconds of tar under pgkeep, $PPR_TAR in the pipe: mostly
system time, the page cache taking $GIB GiB of new files); pgkeep's process used $PR_PK CPU-seconds where
\`zstd -d\` used $PPR_Z: two sha256 passes (the stored bytes and the original stream, both checked
against the manifest) and decompression. The machine was busy $PR_MACH CPU-seconds in $PR s, $(calc "%.2f" "$PR_MACH / $PR") of
the 2 cores ($PPR_MACH in $PPR s, $(calc "%.2f" "$PPR_MACH / $PPR") cores, for the pipe). tar, the busiest process in both, ran on
$(calc "%.0f" "100 * $PR_TAR / $PR") % of the wall time under pgkeep and $(calc "%.0f" "100 * $PPR_TAR / $PPR") % in the pipe$(awk -v a="$PR_TAR" -v b="$PPR_TAR" -v pa="$PR" -v pb="$PPR" 'BEGIN {
    if (a / pa < b / pb - 0.05) printf ": the pipe keeps tar busier, pgkeep makes it wait"
    if (a > 1.1 * b) printf "; and tar needs more CPU for the same files when fed by pgkeep" }').$STRACE_TEXT This VM's memory makes writing $GIB GiB of new files into the page cache
costly and variable (see "Memory on this VM" above: memory left idle goes back to the host), which is why the restores vary most between
rounds.

**pgBackRest** reads the data files itself instead of streaming them through the server
(server CPU s ≈ 0 in its rows, against the walsender's share for pg_basebackup), compresses and
checksums them in its 2 worker processes, and stores files rather than one tar stream
(\`repo1-bundle=y\` packs the small ones together). Its repository size for one backup is the
\`repository.size\` of \`pgbackrest info\`.

EOF
fi
if want pgkeep; then
    cat <<EOF
### pgkeep beyond the timings

\`pgkeep list\` after the run (times are the run's):

\`\`\`
${PK_LIST//"$WORK"/\$WORK}
\`\`\`

\`pgkeep verify --wal\`:

\`\`\`
${PK_VERIFY_WAL//"$WORK"/\$WORK}
\`\`\`

One restore started for real, untimed: \`pgkeep restore --pgdata DIR --immediate --start --port $PORT2\`
(recovery through \`pgkeep wal-fetch\` to the end of the last backup) exited $PK_START_RC$([ -n "$PK_START_ACCOUNTS" ] && echo "; \`count(*)\` of \`pgbench_accounts\` there: $PK_START_ACCOUNTS (expected $ACCOUNTS)"):

\`\`\`
${PK_START_OUT//"$WORK"/\$WORK}
\`\`\`

EOF
fi
cat <<EOF
### Raw results

<details><summary>One JSON line per measurement (/usr/bin/time -v; server and machine CPU and processes from /proc)</summary>

\`\`\`json
$(sed "s|$WORK|\$WORK|g" "$RESULTS")
\`\`\`

</details>

Built in ${BUILD_SECONDS}s; the measurements (with the cluster and \`pgbench -i\`) took ${TOTAL_SECONDS}s; the scratch
directory held at most $(calc "%.1f" "$PEAK_DISK / 1e9") GB (\`du\` after each run). System identifier of the cluster: $SYSID.
EOF
} >"$WORK/report.md"
cp "$WORK/report.md" "$OUT.new"
mv "$OUT.new" "$OUT"
log "done in $(($(date +%s) - START))s: $OUT"
