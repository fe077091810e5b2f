#!/usr/bin/env bash
# The physical backup benchmark (issue 12): `pgkeep backup physical` (each of its modes) and
# `pgkeep restore --pgdata` against pgBackRest and the raw tools (`pg_basebackup | zstd`,
# `zstd -dc | tar -x`), side by side in one run on one throwaway PostgreSQL cluster, each command
# under /usr/bin/time -v; into local repositories and, when Garage is there, into Garage S3 on
# loopback. Replaces the section "Physical backup and restore (issue 12, DATASET=...)" of
# docs/performance.md with the machine, the commands, the medians and every run, the memory
# peaks, the dataset's compression ratio and the issue's goals met or missed.
#
#   benches/physical.sh              # both datasets, one after the other; as root or a normal user
#   DATASET=mixed benches/physical.sh
#   SCALE=1 RUNS=1 OUT=/tmp/p.md PGKEEP_BIN=target/release/pgkeep benches/physical.sh   # a quick check
#
# Environment (all optional):
#   DATASET="mixed pgbench"  the datasets (benches/common.sh): mixed = pgbench -s SCALE plus a table
#                     of 200 random bytes and an indexed md5 per row (~1.1 GB, ~3:1); pgbench =
#                     pgbench alone (~0.6 GB, ~23:1); each gets its own cluster and section
#   SCALE=40          pgbench scale factor (the blobs scale with it: 37 500 rows per unit)
#   BLOB_ROWS=n       rows of the mixed dataset's random table (default 37 500 × SCALE)
#   RUNS=3            how many times each measurement is repeated (the tables show the median)
#   TOOLS="pgkeep pgbackrest pipe"   which to run (all three for the report's goals)
#   MODES="stream local"   pgkeep's `backup physical --mode` values to measure, each its own rows
#                     (`default`: no --mode flag); a pgkeep without --mode is measured once, as is
#   S3=auto           auto: also the Garage S3 rows when a garage binary is found (PGKEEP_GARAGE_BIN,
#                     garage on PATH, ~/.cargo/bin/garage), else say why not; on: require them; off
#   OUT=path          the report to write into (default: docs/performance.md of this checkout)
#   BENCH_DIR=dir     scratch directory (default: $TMPDIR or /tmp); holds the cluster (~1.1 GB of
#                     data + up to ~4 GB of WAL while it loads), the repositories (local and
#                     Garage's: every backup of the run is kept, ~0.4 GB each for mixed), the
#                     pipe's file and one restored data directory at a time (~12 GB at most at
#                     the defaults); removed at the end
#   PGBIN=dir         PostgreSQL binaries (default /usr/lib/postgresql/15/bin)
#   PGKEEP_BIN=path   measure this pgkeep binary instead of building target/release/pgkeep
#   GARAGE_ENV_BIN=path   the benches' garage-env binary instead of building it (S3 rows only)
#   QUIET_MAX=120     longest wait (s) for an idle machine before each measurement
#
# Needs: cargo, jq, zstd, tar, GNU time (/usr/bin/time; `apt-get install -y time`), pgbackrest
# (`apt-get install -y pgbackrest`), PostgreSQL 15 server and client binaries in $PGBIN; for the
# S3 rows Garage, and python3 and openssl for pgBackRest's (a TLS proxy: pgBackRest speaks S3 only
# over HTTPS, the test Garage only HTTP). initdb and postgres refuse to run as root: as root, the
# cluster runs as the `postgres` OS user (runuser) in a directory it owns, and so does every
# measured command, because the server's archive_command (also the postgres user) writes into the
# same repositories.
# Single-quoted `bash -c` scripts and jq programs are expanded by bash and jq, not here:
# shellcheck disable=SC2016
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
log() { printf '[%s] %s\n' "$(date +%T)" "$*" >&2; }
die() { echo "physical.sh: $*" >&2; exit 1; }
# busy_s, wait_idle, describe_machine, the dataset, Garage, the TLS proxy and the report helpers
# shellcheck source=benches/common.sh
. "$ROOT/benches/common.sh"

# Several datasets: one run (its own cluster, its own section) each, one after the other.
DATASET=${DATASET:-mixed pgbench}
if [ "$(wc -w <<<"$DATASET")" -gt 1 ]; then
    for d in $DATASET; do
        log "DATASET=$d"
        DATASET=$d bash "$ROOT/benches/physical.sh"
    done
    exit 0
fi
dataset_init
OUT=${OUT:-$ROOT/docs/performance.md}
RUNS=${RUNS:-3}
TOOLS=${TOOLS:-pgkeep pgbackrest pipe}
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
QUIET_MAX=${QUIET_MAX:-120}
SECTION="## Physical backup and restore (issue 12, DATASET=$DATASET)"
# The section earlier versions of this script wrote (one pgbench cluster, no modes, no S3):
# replaced by the issue-12 sections.
LEGACY_SECTION="## Physical backup and restore"
BASE=${BENCH_DIR:-${TMPDIR:-/tmp}}

want() { case " $TOOLS " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
for tool in $TOOLS; do
    case $tool in pgkeep | pgbackrest | pipe) ;; *) die "TOOLS: unknown tool $tool (pgkeep, pgbackrest, pipe)" ;; esac
done
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "RUNS: a positive integer, not '$RUNS'"
[ "$RUNS" -ge 3 ] || log "RUNS=$RUNS: fewer than the 3 runs issue 12 asks for; the report will say so"

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
# own_pg FILE...: the files belong to the cluster's owner (when root), readable by it alone.
own_pg() {
    chmod 600 "$@"
    if [ "$(id -u)" = 0 ]; then chown postgres: "$@"; fi
}

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
    tls_proxy_stop
    garage_stop
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------------------------------------
# The repositories: local directories, and Garage S3 when there is one.
REPOS=file
if (want pgkeep || want pgbackrest) && s3_wanted; then
    REPOS="file s3"
    if want pgbackrest; then
        command -v openssl >/dev/null || die "openssl is needed for pgBackRest's S3 rows (or S3=off)"
        command -v /usr/bin/python3 python3 >/dev/null || die "python3 is needed for pgBackRest's S3 rows (or S3=off)"
    fi
elif [ -z "${S3_SKIPPED:-}" ]; then
    S3_SKIPPED="left out: neither pgkeep nor pgBackRest in TOOLS"
fi
[ "$REPOS" = file ] && log "Garage S3 rows $S3_SKIPPED; S3=on requires them, S3=off silences this"

BUILD_SECONDS=0
HAS_MODE=
TARGET_DIR=
target_dir() {
    [ -n "$TARGET_DIR" ] || TARGET_DIR=$(cd "$ROOT" && cargo metadata --format-version 1 --no-deps | jq -r .target_directory)
    echo "$TARGET_DIR"
}
if want pgkeep; then
    if [ -n "${PGKEEP_BIN:-}" ]; then
        log "using $PGKEEP_BIN (PGKEEP_BIN; not built)"
        SOURCE_BIN=$PGKEEP_BIN
    else
        log "building (cargo build --release -p pgkeep)"
        build_start=$(date +%s)
        (cd "$ROOT" && cargo build --release -p pgkeep --quiet)
        BUILD_SECONDS=$(($(date +%s) - build_start))
        SOURCE_BIN=$(target_dir)/release/pgkeep
    fi
    # A copy: readable by the postgres user, and not replaced by a concurrent build mid-run.
    mkdir -p "$WORK/bin"
    cp "$SOURCE_BIN" "$WORK/bin/pgkeep"
    chmod 755 "$WORK/bin" "$WORK/bin/pgkeep"
    PGKEEP=$WORK/bin/pgkeep
    help=$("$PGKEEP" backup --help 2>&1 || true)
    grep -q physical <<<"$help" || die "this pgkeep has no \`backup physical\` yet ($("$PGKEEP" --version)); run with TOOLS=\"pgbackrest pipe\""
    # Local mode (pgkeep reads the data directory itself) and stream mode (pg_basebackup) are
    # measured as rows of their own when this pgkeep has --mode; otherwise its one way, as is.
    if "$PGKEEP" backup physical --help 2>&1 | grep -q -- --mode; then
        HAS_MODE=1
        MODES=${MODES:-stream local}
    else
        if [ -n "${MODES:-}" ] && [ "$MODES" != default ]; then
            log "this pgkeep has no \`backup physical --mode\`: measuring its default only (MODES=\"$MODES\" left aside)"
        fi
        MODES=default
    fi
    for mode in $MODES; do
        case $mode in stream | local | default) ;; *) die "MODES: unknown mode $mode (stream, local, default)" ;; esac
    done
else
    MODES=
fi
GARAGE_ENV=
if [ "$REPOS" != file ]; then
    if [ -n "${GARAGE_ENV_BIN:-}" ]; then
        GARAGE_ENV=$GARAGE_ENV_BIN
    else
        log "building (cargo build --release -p pgkeep-benches --bin garage-env)"
        build_start=$(date +%s)
        (cd "$ROOT" && cargo build --release -p pgkeep-benches --bin garage-env --quiet)
        BUILD_SECONDS=$((BUILD_SECONDS + $(date +%s) - build_start))
        GARAGE_ENV=$(target_dir)/release/garage-env
    fi
    [ -x "$GARAGE_ENV" ] || die "$GARAGE_ENV is not an executable (GARAGE_ENV_BIN)"
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
# which a -c option would override. While the dataset loads, the archiver throws the WAL away
# (/bin/true): archiving the load is not what is measured.
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

log "loading DATASET=$DATASET (SCALE=$SCALE, BLOB_ROWS=$BLOB_ROWS) into bench"
load_dataset bench "$WORK/pgbench.log"
INIT_SECONDS=$LOAD_SECONDS
sql "CHECKPOINT"
DB_BYTES=$(sql "SELECT pg_database_size('bench')")
DB_PRETTY=$(sql "SELECT pg_size_pretty(pg_database_size('bench'))")
COUNTS=$(dataset_counts bench)
TABLES=$(dataset_tables bench)
SERVER_VERSION=$(sql "SHOW server_version")
SYSID=$(sql "SELECT system_identifier FROM pg_control_system()")
log "bench: $DB_PRETTY ($DB_BYTES bytes), $COUNTS; $TABLES"

# ---------------------------------------------------------------------------------------------
# The repositories. Each phase (file, then s3) has its own archive_command feeding that phase's
# archives: every segment reaches each tool's archive (each tool restores from its own), and every
# backup that waits for its last segment to be archived (pgkeep's, pgBackRest's) waits for the same
# pushes. The pipe (pg_basebackup -X fetch) carries its WAL in its tar and waits for no archive.
# pgkeep_conf FILE URL [S3-SECTION]: pgkeep's configuration for a repository.
pgkeep_conf() {
    cat >"$1" <<EOF
[repository]
url = "$2"
cluster = "bench"
${3:-}
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
    own_pg "$1"
}
# pgbackrest_conf FILE REPO-OPTIONS: pgBackRest's configuration (issue 12: zst level 1, 2
# processes, bundles) with the given repo1-* lines.
pgbackrest_conf() {
    cat >"$1" <<EOF
[global]
$2
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
    own_pg "$1"
}
if want pgkeep; then
    pgkeep_conf "$WORK/pgkeep.toml" "file://$WORK/pgkeep-repo"
fi
if want pgbackrest; then
    pgbackrest_conf "$WORK/pgbackrest.conf" "repo1-path=$WORK/pgbackrest/repo"
    as_pg "$PGBACKREST" "--config=$WORK/pgbackrest.conf" --stanza=bench stanza-create >"$WORK/pgbackrest-stanza.log" 2>&1 \
        || { cat "$WORK/pgbackrest-stanza.log" >&2; exit 1; }
fi

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
# archive_into PHASE: sets the archive_command of PHASE (file or s3: pgkeep's wal-push and
# pgBackRest's archive-push into that phase's repositories), then ends a WAL segment and waits
# until it is archived without a failure.
declare -A ARCHIVE_COMMANDS
archive_into() {
    local cmd= failed
    want pgkeep && cmd="$PGKEEP wal-push --config $PK_CONF %p"
    want pgbackrest && cmd=${cmd:+$cmd && }"${PGBR[*]} archive-push %p"
    cmd=${cmd:-/bin/true}
    ARCHIVE_COMMANDS[$1]=$cmd
    failed=$(sql "SELECT failed_count FROM pg_stat_archiver")
    sql "ALTER SYSTEM SET archive_command = '$cmd'"
    sql "SELECT pg_reload_conf()" >/dev/null
    sleep 1
    [ "$(sql "SHOW archive_command")" = "$cmd" ] || die "archive_command did not change"
    log "first archived segment into the $1 repositories (archive_command: $cmd)"
    sql "SELECT pg_switch_wal()" >/dev/null
    sql "CHECKPOINT"
    sql "SELECT pg_switch_wal()" >/dev/null
    archive_drained
    [ "$(sql "SELECT failed_count FROM pg_stat_archiver")" = "$failed" ] || { tail -20 "$WORK/sock/server.log" >&2; die "archive_command failed"; }
}

# start_s3: starts Garage (and the TLS proxy for pgBackRest), writes both tools' S3
# configurations (the keys in them: the archiver, started long before, does not have Garage's
# environment) and creates pgBackRest's stanza there.
start_s3() {
    log "starting a throwaway Garage"
    garage_start "$GARAGE_ENV" "$WORK/garage.env"
    log "Garage at $AWS_ENDPOINT_URL (server pid $GARAGE_SERVER_PID, started in ${GARAGE_STARTUP_S}s)"
    if want pgkeep; then
        pgkeep_conf "$WORK/pgkeep-s3.toml" "s3://$PGKEEP_BENCH_BUCKET/physical-pgkeep" "
[repository.s3]
region = \"$AWS_REGION\"
endpoint = \"$AWS_ENDPOINT_URL\"
force-path-style = true
access-key-id = \"$AWS_ACCESS_KEY_ID\"
secret-access-key = \"$AWS_SECRET_ACCESS_KEY\"
"
    fi
    if want pgbackrest; then
        tls_proxy_start "${AWS_ENDPOINT_URL##*:}" "$WORK"
        log "TLS proxy for pgBackRest on 127.0.0.1:$TLS_PROXY_PORT (pid $TLS_PROXY_PID)"
        pgbackrest_conf "$WORK/pgbackrest-s3.conf" "repo1-type=s3
repo1-path=/physical-pgbackrest
repo1-s3-bucket=$PGKEEP_BENCH_BUCKET
repo1-s3-endpoint=127.0.0.1
repo1-storage-port=$TLS_PROXY_PORT
repo1-storage-verify-tls=n
repo1-s3-uri-style=path
repo1-s3-region=$AWS_REGION
repo1-s3-key=$AWS_ACCESS_KEY_ID
repo1-s3-key-secret=$AWS_SECRET_ACCESS_KEY"
        as_pg "$PGBACKREST" "--config=$WORK/pgbackrest-s3.conf" --stanza=bench stanza-create >"$WORK/pgbackrest-stanza-s3.log" 2>&1 \
            || { cat "$WORK/pgbackrest-stanza-s3.log" >&2; die "pgbackrest stanza-create on Garage failed"; }
    fi
}

# use_repos PHASE: points PK_CONF, PGBR, SUF (the results' name suffix) and PHASE_TOOLS at the
# phase's repositories (the pipe only writes local files).
use_repos() {
    PHASE=$1
    local tool mode conf_suffix=
    [ "$PHASE" = s3 ] && conf_suffix=-s3
    SUF=${conf_suffix:+@s3}
    PK_CONF=$WORK/pgkeep$conf_suffix.toml
    PGBR=()
    want pgbackrest && PGBR=("$PGBACKREST" "--config=$WORK/pgbackrest$conf_suffix.conf" --stanza=bench)
    PHASE_TOOLS=()
    for tool in $TOOLS; do
        case $tool in
            pgkeep) for mode in $MODES; do PHASE_TOOLS+=("pgkeep@$mode"); done ;;
            pipe) if [ "$PHASE" = file ]; then PHASE_TOOLS+=("pipe@"); fi ;;
            *) PHASE_TOOLS+=("$tool@") ;;
        esac
    done
}
use_repos file
archive_into file

PGKEEP_CHECK=
if want pgkeep; then
    PGKEEP_CHECK=$("$PGKEEP" --config "$WORK/pgkeep.toml" --json check 2>&1 || true)
    echo "$PGKEEP_CHECK" >"$WORK/pgkeep-check.json"
fi
if want pgbackrest; then
    PGBR_CHECK=$(as_pg "${PGBR[@]}" check 2>&1) || { echo "$PGBR_CHECK" >&2; die "pgbackrest check failed"; }
fi

# ---------------------------------------------------------------------------------------------
RESULTS=$WORK/results.jsonl
: >"$RESULTS"
CLK_TCK=$(getconf CLK_TCK)
PAGE_KIB=$(($(getconf PAGESIZE) / 1024))
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
# s3_side_cpu_s: "GARAGE PROXY", the CPU-seconds so far of the Garage server and of the TLS proxy
# (0 when not running).
s3_side_cpu_s() {
    local g=0 p=0
    [ -n "${GARAGE_SERVER_PID:-}" ] && [ -n "$GARAGE_PID" ] && g=$(proc_cpu_s "$GARAGE_SERVER_PID")
    [ -n "$TLS_PROXY_PID" ] && p=$(proc_cpu_s "$TLS_PROXY_PID")
    echo "$g $p"
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
# PostgreSQL server's CPU, Garage's and the TLS proxy's (S3 rows) and the whole machine's busy time
# over the same interval, and from the samples the processes seen (with their largest RSS), as a
# JSON line tagged NAME.
timed() {
    local name=$1
    shift
    wait_quiet
    log "run: $name"
    local b0 b1 s0 s1 g0 g1 p0 p1 tpid spid
    b0=$(busy_s); s0=$(server_cpu_s); read -r g0 p0 <<<"$(s3_side_cpu_s)"
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
    b1=$(busy_s); s1=$(server_cpu_s); read -r g1 p1 <<<"$(s3_side_cpu_s)"
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
    jq -nc --arg name "$name" --arg repo "$PHASE" --argjson run "${run:-0}" --argjson wall "$wall" --argjson user "$user" --argjson sys "$sys" \
        --argjson rss "$rss" --argjson procs "$procs" --arg threads "$threads" \
        --argjson minflt "${minflt:-0}" --argjson ctx "${ctx:-0}" \
        --argjson server "$(awk -v a="$s0" -v b="$s1" 'BEGIN {printf "%.2f", b - a}')" \
        --argjson garage "$(awk -v a="$g0" -v b="$g1" 'BEGIN {printf "%.2f", b - a}')" \
        --argjson proxy "$(awk -v a="$p0" -v b="$p1" 'BEGIN {printf "%.2f", b - a}')" \
        --argjson machine "$(awk -v a="$b0" -v b="$b1" 'BEGIN {printf "%.2f", b - a}')" \
        '{name: $name, repo: $repo, run: $run, wall_s: $wall, user_s: $user, sys_s: $sys, cpu_s: ((($user + $sys) * 100 | round) / 100),
          max_rss_mib: (($rss / 1024 * 10 | round) / 10), server_cpu_s: $server, garage_cpu_s: $garage, tls_proxy_cpu_s: $proxy,
          machine_busy_s: $machine, minor_faults: $minflt, voluntary_switches: $ctx, processes: $procs, threads: $threads}' \
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
    record -n --arg name "$kind-restored$SUF" --argjson bytes "$(dir_bytes "$dir")" \
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
# The backup each pgkeep row made last, by its result name: what its restore row restores.
declare -A PK_ID
PK_LAST_ID=
# pk_name MODE: pgkeep's result name for a mode (`pgkeep` when measured without --mode).
pk_name() { if [ "$1" = default ]; then echo pgkeep; else echo "pgkeep-$1"; fi; }
# One function per tool and kind, the mode (pgkeep's) as argument; each round runs them in a
# rotated order (round 1: pgkeep's modes, pgbackrest, pipe; round 2: from the second on; ...), so
# that none always comes first after the previous round's files were removed.
backup_pgkeep() {
    local name mode_args=()
    name=$(pk_name "$1")-backup$SUF
    [ "$1" = default ] || mode_args=(--mode "$1")
    timed "$name" "$PGKEEP" --config "$PK_CONF" --json backup physical "${mode_args[@]}"
    cp "$WORK/out.txt" "$WORK/$name-$run.json"
    cp "$WORK/err.txt" "$WORK/$name-$run.err"
    PK_ID[$name]=$(jq -r '.id // empty' "$WORK/out.txt" 2>/dev/null || true)
    [ -n "${PK_ID[$name]}" ] || die "$name: no backup id in pgkeep's --json output ($WORK/$name-$run.json)"
    [ "$PHASE" = file ] && PK_LAST_ID=${PK_ID[$name]}
    # What pgkeep stored: every stored_size in its manifest (the base backup's objects), and the
    # mode it says it used.
    record -n --arg name "$name-size" --argjson run "$run" --arg id "${PK_ID[$name]}" \
        --argjson stored "$(jq '[.. | objects | .stored_size? // empty] | add // 0' "$WORK/out.txt" 2>/dev/null || echo 0)" \
        --argjson original "$(jq '[.. | objects | select(has("stored_size")) | .size? // empty] | add // 0' "$WORK/out.txt" 2>/dev/null || echo 0)" \
        --arg mode "$(jq -r '.physical.mode // empty' "$WORK/out.txt" 2>/dev/null || true)" \
        '{name: $name, run: $run, id: $id, mode: $mode, stored_bytes: $stored, original_bytes: $original}'
}
backup_pgbackrest() {
    timed "pgbackrest-backup$SUF" "${PGBR[@]}" --type=full backup
    as_pg "${PGBR[@]}" --output=json info >"$WORK/pgbackrest-info.json"
    record --arg name "pgbackrest-backup$SUF-size" --argjson run "$run" \
        '{name: $name, run: $run, stored_bytes: .[0].backup[-1].info.repository.size, original_bytes: .[0].backup[-1].info.size, label: .[0].backup[-1].label}' \
        "$WORK/pgbackrest-info.json"
}
backup_pipe() {
    timed pipe-backup bash -c 'set -o pipefail; "$0" -Ft -D - -X fetch --checkpoint=fast | zstd -q -1 -T2 >"$1"' \
        "$PGBIN/pg_basebackup" "$PIPE_FILE"
    # The tar stream's size, once (decompressing it takes a few seconds).
    local original=null
    [ "$run" = "$RUNS" ] && original=$(zstd -q -dc "$PIPE_FILE" | wc -c)
    record -n --arg name pipe-backup-size --argjson run "$run" --argjson stored "$(stat -c %s "$PIPE_FILE")" \
        --argjson original "$original" \
        '{name: $name, run: $run, stored_bytes: $stored, original_bytes: $original}'
}
restore_pgkeep() {
    local name id
    name=$(pk_name "$1")
    id=${PK_ID[$name-backup$SUF]:-}
    [ -n "$id" ] || die "$name-restore$SUF: no backup of $name-backup$SUF to restore"
    timed "$name-restore$SUF" "$PGKEEP" --config "$PK_CONF" restore --pgdata "$R/pgkeep" --backup "$id"
    cp "$WORK/out.txt" "$WORK/$name-restore$SUF-$run.out"
    cp "$WORK/err.txt" "$WORK/$name-restore$SUF-$run.err"
    check_restored "$name" "$R/pgkeep"
    rm -rf "$R/pgkeep"
}
restore_pgbackrest() {
    as_pg mkdir -m 700 "$R/pgbackrest"
    timed "pgbackrest-restore$SUF" "${PGBR[@]}" "--pg1-path=$R/pgbackrest" restore
    check_restored pgbackrest "$R/pgbackrest"
    rm -rf "$R/pgbackrest"
}
restore_pipe() {
    timed pipe-restore bash -c 'set -o pipefail; mkdir -m 700 "$1" && zstd -q -dc "$0" | tar -xf - -C "$1"' "$PIPE_FILE" "$R/pipe"
    check_restored pipe "$R/pipe"
    rm -rf "$R/pipe"
}
rotated() { # rotated ROUND: this phase's tools in this round's order
    local n=${#PHASE_TOOLS[@]} i
    for ((i = 0; i < n; i++)); do
        printf '%s\n' "${PHASE_TOOLS[$(((i + $1 - 1) % n))]}"
    done
}
# How pgkeep moves the bytes between itself and its children: one more stream-mode backup and, if
# its restores run tar, one more restore under strace (untimed), counting pgkeep's reads from
# pg_basebackup's pipe and its writes into tar's. io_stats FILE CALL prints "calls bytes eagain"
# for the file descriptor that carried the most bytes through CALL in pgkeep's own threads (not in
# the children it started).
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
# beyond_timings and strace_io run after the local phase (its archive_command still set, so the
# local archive has no gap and a backup's last segment reaches it). beyond_timings: pgkeep's view
# of the local repository, a verification, and one restored copy started for real (recovery
# through pgkeep wal-fetch up to the end of the last backup).
beyond_timings() {
    PK_LIST=
    PK_VERIFY_WAL=
    PK_START_OUT=
    PK_START_RC=
    PK_START_COUNTS=
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
            PK_START_COUNTS=$(PGPORT=$PORT2 dataset_counts bench 2>&1 || true)
        fi
        as_pg "$PGBIN/pg_ctl" -D "$R/started" -m fast -w stop >/dev/null 2>&1 || true
        record -n --arg out "$PK_START_OUT" --arg rc "$PK_START_RC" --arg counts "$PK_START_COUNTS" \
            '{name: "pgkeep-restore-start", exit: $rc, counts: $counts, output: $out}'
        rm -rf "$R/started"
    fi
}
# strace_io: the strace counts (above) of one more stream-mode backup and restore.
strace_io() {
    # Stream mode: `--mode stream`, or a pgkeep without --mode (its one way is pg_basebackup).
    STREAM_ARGS=()
    STREAM_ROW=
    case " $MODES " in
        *" stream "*) STREAM_ARGS=(--mode stream); STREAM_ROW=pgkeep-stream ;;
        " default ") [ -z "$HAS_MODE" ] && STREAM_ROW=pgkeep ;;
    esac
    RESTORE_TAR=$(jq -sr '[.[] | select((.name | test("^pgkeep.*-restore$")) and any(.processes[]?; .comm == "tar"))] | length' "$RESULTS")
    if want pgkeep && [ -n "$STREAM_ROW" ] && command -v strace >/dev/null; then
        log "strace: pgkeep's reads from pg_basebackup (and writes into tar) (one more backup and restore, untimed)"
        as_pg strace -f -qq -e trace=read,write,execve -o "$WORK/tmp/backup.strace" \
            "$PGKEEP" --config "$WORK/pgkeep.toml" -q backup physical "${STREAM_ARGS[@]}" >/dev/null
        STRACE_READS=$(io_stats "$WORK/tmp/backup.strace" read)
        STRACE_WRITES=
        if [ "$RESTORE_TAR" -gt 0 ]; then
            as_pg strace -f -qq -e trace=read,write,execve -o "$WORK/tmp/restore.strace" \
                "$PGKEEP" --config "$WORK/pgkeep.toml" -q restore --pgdata "$R/strace" --immediate >/dev/null
            STRACE_WRITES=$(io_stats "$WORK/tmp/restore.strace" write)
        fi
        rm -rf "$R/strace" "$WORK"/tmp/*.strace
        read -r sr_n sr_b sr_e <<<"${STRACE_READS:-0 0 0}"
        read -r sw_n sw_b sw_e <<<"${STRACE_WRITES:-0 0 0}"
        record -n --argjson rn "$sr_n" --argjson rb "$sr_b" --argjson re "$sr_e" --argjson wn "$sw_n" --argjson wb "$sw_b" --argjson we "$sw_e" \
            '{name: "strace-io", backup_reads: $rn, backup_read_bytes: $rb, backup_read_eagain: $re, restore_writes: $wn, restore_write_bytes: $wb, restore_write_eagain: $we}'
    fi
}

for phase in $REPOS; do
    if [ "$phase" = s3 ]; then
        start_s3
        use_repos s3
        archive_into s3
    fi
    for kind in backup restore; do
        for run in $(seq "$RUNS"); do
            order=$(rotated "$run" | paste -sd' ')
            log "${kind}s into the $PHASE repositories, round $run of $RUNS: $order"
            for entry in $order; do
                "${kind}_${entry%%@*}" "${entry#*@}"
            done
        done
    done
    run=0
    if [ "$phase" = file ]; then
        beyond_timings
        strace_io
    fi
done

ARCHIVE_FAILURES=$(grep -c 'archive command failed' "$WORK/sock/server.log" || true)
ARCHIVER=$(sql "SELECT format('%s archived, %s failed', archived_count, failed_count) FROM pg_stat_archiver")
GARAGE_HWM=
if [ -n "$GARAGE_PID" ]; then
    GARAGE_HWM=$(awk '/^VmHWM/ {printf "%.0f", $2 / 1024}' "/proc/$GARAGE_SERVER_PID/status" 2>/dev/null || true)
fi
TLS_PROXY_HWM=
if [ -n "$TLS_PROXY_PID" ]; then
    TLS_PROXY_HWM=$(awk '/^VmHWM/ {printf "%.0f", $2 / 1024}' "/proc/$TLS_PROXY_PID/status" 2>/dev/null || true)
fi
TOTAL_SECONDS=$(($(date +%s) - START))

# ---------------------------------------------------------------------------------------------
log "writing $OUT"
# last_of NAME FIELD: FIELD of the last record tagged NAME.
last_of() { jq -sr --arg name "$1" "[.[] | select(.name == \$name)] | last | $2" "$RESULTS"; }
# max_rss NAME: the largest peak RSS (MiB, /usr/bin/time) of any run tagged NAME.
max_rss() { jq -sr --arg name "$1" '[.[] | select(.name == $name) | .max_rss_mib] | max' "$RESULTS"; }
below() { awk -v x="$1" -v lim="$2" 'BEGIN {print (x < lim ? "**met**" : "**missed**")}'; }
# pgkeep_rss NAME: the largest RSS sampled for a process called pgkeep in the median run.
pgkeep_rss() { r "$1" '[.processes[] | select(.comm == "pgkeep") | .rss_mib] | max // "–"'; }
procs_line() {
    r "$1" '[.processes[] | select(.comm != "runuser") | "\(.comm) \(.from_s)–\(.to_s) s, \(.cpu_s) CPU s, \(.rss_mib) MiB"] | join("; ")'
}
# ratio_of SIZE-RECORD: "original / stored = R:1" of the last such record, or "–".
ratio_of() {
    local s o
    has "$1" || { echo "–"; return; }
    s=$(last_of "$1" .stored_bytes)
    o=$(last_of "$1" .original_bytes)
    if [ "${o:-0}" != 0 ] && [ "$o" != null ] && [ "${s:-0}" != 0 ]; then
        echo "$(mb "$o") MB → $(mb "$s") MB = $(calc "%.1f" "$o / $s"):1"
    else
        echo "–"
    fi
}
# label NAME: how the tables name a result.
label() {
    local n=${1%@s3} m
    case $n in
        pgkeep-backup) echo "\`pgkeep backup physical\`" ;;
        pgkeep-*-backup) m=${n#pgkeep-}; echo "\`pgkeep backup physical --mode ${m%-backup}\`" ;;
        pgkeep-restore) echo "\`pgkeep restore --backup ID\` (not started)" ;;
        pgkeep-*-restore) m=${n#pgkeep-}; echo "\`pgkeep restore --backup ID\` of the \`--mode ${m%-restore}\` backup (not started)" ;;
        pgbackrest-backup) echo "\`pgbackrest backup --type=full\`" ;;
        pgbackrest-restore) echo "\`pgbackrest restore\`" ;;
        pipe-backup) echo "\`pg_basebackup -X fetch \| zstd -1 -T2\`" ;;
        pipe-restore) echo "\`zstd -dc \| tar -x\`" ;;
        pgkeep-verify) echo "\`pgkeep verify ID\`" ;;
        *) echo "\`$n\`" ;;
    esac
}
# plain_label NAME: the label outside a table (no escaped |).
plain_label() {
    local l
    l=$(label "$1")
    echo "${l//\\|/|}"
}
# names KIND SUF: the result names of KIND (backup or restore) of a phase, in the tables' order.
names() {
    local m
    for m in $MODES; do echo "$(pk_name "$m")-$1$2"; done
    want pgbackrest && echo "pgbackrest-$1$2"
    if want pipe && [ -z "$2" ]; then echo "pipe-$1"; fi
    return 0
}
row() { # row NAME [SIZE-RECORD]: a line of a results table (S3 rows with Garage's and the proxy's CPU)
    has "$1" || return 0
    local stored="–" ratio="–" s3=
    if [ -n "${2:-}" ] && has "$2"; then
        local s o
        s=$(last_of "$2" .stored_bytes)
        o=$(last_of "$2" .original_bytes)
        stored="$(mb "$s") MB"
        [ "${o:-0}" != 0 ] && [ "$o" != null ] && ratio="$(calc "%.1f" "$o / $s"):1"
    fi
    [[ $1 == *@s3 ]] && s3=1
    median "$1" | jq -r --arg lbl "$(label "$1")" --arg stored "$stored" --arg ratio "$ratio" --arg all "$(walls "$1")" \
        --arg pk "$(pgkeep_rss "$1")" --arg s3 "$s3" \
        '"| \($lbl) | **\(.wall_s)** | \($all) | \(.user_s) + \(.sys_s) = \(.cpu_s) | \(.server_cpu_s) | "
         + (if $s3 != "" then "\(.garage_cpu_s) | \(.tls_proxy_cpu_s) | " else "" end)
         + "\(.machine_busy_s) | \(.max_rss_mib) | \($pk) | \($stored) | \($ratio) |"'
}
# results_table SUF: the results of a phase ("" local, "@s3").
results_table() {
    local n
    if [ -n "$1" ]; then
        echo "| run | wall s (median) | all runs, wall s | CPU s (user + sys) | server CPU s | Garage CPU s | TLS proxy CPU s | machine CPU s | peak RSS MiB | pgkeep RSS MiB | stored | ratio |"
        echo "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    else
        echo "| run | wall s (median) | all runs, wall s | CPU s (user + sys) | server CPU s | machine CPU s | peak RSS MiB | pgkeep RSS MiB | stored | ratio |"
        echo "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|"
    fi
    for n in $(names backup "$1"); do row "$n" "$n-size"; done
    for n in $(names restore "$1"); do row "$n"; done
    if [ -z "$1" ]; then row pgkeep-verify; fi
}
# goal_rows SUF: the issue-12 goals of each pgkeep row of a phase against pgBackRest's.
goal_rows() {
    local m n kind base limit pk br x
    for kind in backup restore; do
        limit=0.5
        [ "$kind" = restore ] && limit=0.8
        base=pgbackrest-$kind$1
        for m in $MODES; do
            n=$(pk_name "$m")-$kind$1
            has "$n" || continue
            pk=$(r "$n" .wall_s)
            if has "$base"; then
                br=$(r "$base" .wall_s)
                x=$(calc "%.3f" "$pk / $br")
                echo "| $(label "$n")${1:+ (S3)} | $kind ≤ ${limit}× pgBackRest | $pk s / $br s = $x× | $(pair_ratios "$n" "$base") | $(goal "$x" "$limit") | $(max_rss "$n") | $(below "$(max_rss "$n")" 128) |"
            else
                echo "| $(label "$n")${1:+ (S3)} | $kind ≤ ${limit}× pgBackRest | $pk s (pgBackRest not run) | – | – | $(max_rss "$n") | $(below "$(max_rss "$n")" 128) |"
            fi
        done
    done
}
# raw_lines: pgkeep's rows against the raw tools (local repository), one line each.
raw_lines() {
    local m n kind
    has pipe-backup || return 0
    for m in $MODES; do
        for kind in backup restore; do
            n=$(pk_name "$m")-$kind
            has "$n" && has "pipe-$kind" || continue
            echo "- $(plain_label "$n"): $(calc "%.3f" "$(r "$n" .wall_s) / $(r "pipe-$kind" .wall_s)")× $(plain_label "pipe-$kind") (per round $(pair_ratios "$n" "pipe-$kind"))"
        done
    done
}
# explain NAME: where the median run's CPU went, one line.
explain() {
    has "$1" || return 0
    local w m s
    w=$(r "$1" .wall_s); m=$(r "$1" .machine_busy_s); s=$(r "$1" .server_cpu_s)
    echo "- $(plain_label "$1")${2:-}: $w s; the machine was busy $m CPU-seconds ($(calc "%.2f" "$m / $w") of the $NPROC cores), the PostgreSQL server $s of them$(r "$1" 'if .garage_cpu_s > 0 or .tls_proxy_cpu_s > 0 then ", Garage \(.garage_cpu_s), the TLS proxy \(.tls_proxy_cpu_s)" else "" end'); by process: $(r "$1" '[.processes | group_by(.comm)[] | select(.[0].comm != "runuser") | "\(.[0].comm) \(map(.cpu_s) | add * 100 | round / 100)"] | join(", ")'); busiest thread $(r "$1" '.threads | split(", ")[0] // "–"') s."
}

# commands_block: the measured commands, as run (paths relative to $WORK).
commands_block() {
    local m
    echo "# backups; each round runs them in turn, the order rotated by one each round"
    for m in $MODES; do
        if [ "$m" = default ]; then
            echo "pgkeep --config pgkeep.toml --json backup physical"
        else
            echo "pgkeep --config pgkeep.toml --json backup physical --mode $m"
        fi
    done
    if want pgkeep; then echo "#   pgkeep.toml: [compression] level = 1, threads = 2; [repository] url = \"file://\$WORK/pgkeep-repo\""; fi
    if want pgbackrest; then echo "pgbackrest --config=pgbackrest.conf --stanza=bench --type=full backup"; fi
    if want pipe; then echo "bash -c 'pg_basebackup -Ft -D - -X fetch --checkpoint=fast | zstd -q -1 -T2 > base.tar.zst'"; fi
    echo "# restores of each row's last backup, rotated the same way; each directory is checked, then removed"
    if want pgkeep; then echo "pgkeep --config pgkeep.toml restore --pgdata \$WORK/restore/pgkeep --backup ID     # absent directory; not started"; fi
    if want pgbackrest; then echo "pgbackrest --config=pgbackrest.conf --stanza=bench --pg1-path=\$WORK/restore/pgbackrest restore   # empty directory (mkdir -m 700 untimed)"; fi
    if want pipe; then echo "bash -c 'mkdir -m 700 DIR && zstd -q -dc base.tar.zst | tar -xf - -C DIR'"; fi
    if [[ $REPOS == *s3* ]]; then
        echo "# S3, after all of the above: the same pgkeep and pgBackRest commands, with pgkeep-s3.toml"
        echo "#   (url = \"s3://$PGKEEP_BENCH_BUCKET/physical-pgkeep\", the keys in [repository.s3]) and pgbackrest-s3.conf"
        echo "#   (repo1-type=s3, repo1-s3-uri-style=path, the TLS proxy's port; the rest as below)"
    fi
}
MODE_LIST=
for mode in $MODES; do MODE_LIST="$MODE_LIST, \`$mode\`"; done
MODE_LIST=${MODE_LIST#, }
PIPE_RATIO=$(ratio_of pipe-backup-size)
PGBR_RATIO=$(ratio_of pgbackrest-backup-size)
COMPRESSION="the pipe: $PIPE_RATIO (the tar stream, with the backup's WAL); pgBackRest: $PGBR_RATIO (its files)"
for mode in $MODES; do COMPRESSION="$COMPRESSION; \`$(pk_name "$mode")\`: $(ratio_of "$(pk_name "$mode")-backup-size")"; done
PK_USED=
for mode in $MODES; do
    used=$(last_of "$(pk_name "$mode")-backup-size" '.mode // ""' 2>/dev/null || true)
    [ -n "$used" ] && PK_USED="$PK_USED; \`$(pk_name "$mode")\` reported mode \`$used\`"
done
PK_USED=${PK_USED#; }
if [[ $REPOS == *s3* ]]; then
    S3_TEXT="Garage ${GARAGE_VERSION:-} on 127.0.0.1 (\`garage-env\`: the test kit's single-node server, sqlite metadata, data on the same disk; its peak RSS ${GARAGE_HWM:-?} MiB). pgkeep talks plain HTTP to it (\`[repository.s3]\` defaults: 16 MiB parts, 4 in flight); pgBackRest 2.45 speaks S3 only over HTTPS, so it goes through a TLS proxy on loopback (python3 asyncio + ssl, a self-signed certificate, \`repo1-storage-verify-tls=n\`; peak RSS ${TLS_PROXY_HWM:-?} MiB) whose CPU is shown apart"
else
    S3_TEXT="not run: $S3_SKIPPED"
fi

{
if [ -f "$OUT" ]; then
    without_sections "$OUT" "$SECTION" "$LEGACY_SECTION"
    echo
fi
cat <<EOF
$SECTION

\`pgkeep backup physical\` ($([ -n "$HAS_MODE" ] && echo "modes $MODE_LIST" || echo "its one mode: pg_basebackup, this pgkeep has no \`--mode\`")) and \`pgkeep restore
--pgdata\` next to pgBackRest and the raw tools on one cluster holding the \`$DATASET\` dataset, into
local repositories$([[ $REPOS == *s3* ]] && echo " and into Garage S3 on loopback"), generated by \`benches/physical.sh\` on $(date -u +%Y-%m-%d) at
commit \`$GIT_REV\`$GIT_DIRTY${PGKEEP_VERSION:+ ($PGKEEP_VERSION)}. Compare speeds only within this run. Rerun it with:

\`\`\`sh
DATASET=$DATASET benches/physical.sh   # builds, runs everything (~$((TOTAL_SECONDS / 60 + 1)) min here), replaces this section
\`\`\`

### Setup

| | |
|---|---|
| CPU | $CPU_MODEL, \`nproc\` = $NPROC |
| Memory | $MEM |
| Kernel | $KERNEL (a VM) |
| Disk | $DISK (one virtual disk for the cluster, the repositories, Garage's data, the pipe's file and the restores) |
| PostgreSQL | $SERVER_VERSION, a throwaway cluster on 127.0.0.1 on the same machine (\`initdb --locale=C.UTF-8\`; \`shared_buffers=1GB\`, \`max_wal_size=4GB\`, \`wal_level=replica\`, \`archive_mode=on\`, fsync on, the rest default) |
| Tools | $PG_BASEBACKUP_VERSION; ${PGBR_VERSION:-pgBackRest not run}; $ZSTD_CLI; $TAR_VERSION |
| Dataset | \`DATASET=$DATASET\`: $DATASET_TEXT (${INIT_SECONDS}s to create, then \`VACUUM ANALYZE\`): \`pg_database_size('bench')\` = $DB_BYTES bytes ($DB_PRETTY); $COUNTS; $TABLES; the data directory $(mb "$PGDATA_BYTES") MB of which pg_wal $(mb "$WAL_BYTES") MB (not backed up) |
| Compression (zstd level 1) | $COMPRESSION |
| S3 | $S3_TEXT |

**WAL archiving.** Each phase has one \`archive_command\` feeding that phase's archives, so that
each tool restores from its own and every backup that waits at its end for its last segment
(pgkeep's, and pgBackRest's archive check) waits for the same pushes:

\`\`\`
$(for p in $REPOS; do echo "$p: archive_command = '${ARCHIVE_COMMANDS[$p]//"$WORK"/\$WORK}'"; done)
\`\`\`

The pipe (\`pg_basebackup -X fetch\`) carries the backup's WAL in its own tar and waits for no
archive. While the dataset loaded the archive_command was \`/bin/true\` (the load's WAL is not what
is measured); before each phase it was set as above, then the WAL switched and archived. The
archiver at the end (\`pg_stat_archiver\`, the load's segments through /bin/true included):
$ARCHIVER; "archive command failed" lines in the server log: ${ARCHIVE_FAILURES:-0}.

**Commands.** Each runs alone — before each the script waits until no segment waits for the
archiver, runs \`CHECKPOINT\` and \`sync\`, and waits until the machine is idle — under
\`/usr/bin/time -v\`, as the postgres OS user, connecting through \`PGHOST=127.0.0.1 PGPORT=$PORT PGUSER=postgres\`.
The cache is warm: the database was read once by an untimed \`pg_basebackup > /dev/null\`.

\`\`\`sh
$(commands_block)
\`\`\`

pgBackRest's configuration: \`repo1-bundle=y\`, \`compress-type=zst\`, \`compress-level=1\`,
\`process-max=2\`, \`start-fast=y\` (the equivalent of \`--checkpoint=fast\`), \`archive-async=n\`, a
local repository (\`repo1-path=\$WORK/pgbackrest/repo\`). Durability differs: pgkeep and pgBackRest
fsync what they store in their repositories, the pipe's \`>\` does not, and \`tar -x\` fsyncs none of
the files it restores. Each restored directory is checked (\`PG_VERSION\`, \`global/pg_control\`,
\`backup_label\`, the bench database's directory) before it is removed. The list ran $RUNS times;
the tables show, per command, the run with the **median** wall time, and list every run's.$([ "$RUNS" -lt 3 ] && printf '\n%s' "**RUNS=$RUNS: fewer than the 3 runs issue 12 asks for; a check of the script, not a result.**")
${PK_USED:+Modes pgkeep reported using (its --json output): $PK_USED.}

### Results

**CPU s** is what \`/usr/bin/time\` reports for the measured process and the children it waited for
(pg_basebackup under pgkeep's stream mode, pgBackRest's local worker processes, both sides of a
pipe). **Peak RSS** is \`/usr/bin/time\`'s maximum resident set size: the largest *single* process
of that tree, not their sum. **pgkeep RSS** is the largest RSS sampled (every 0.25 s from \`/proc\`)
of the \`pgkeep\` process itself. **Server CPU s** is the PostgreSQL server's (postmaster, backends,
the walsender that streams pg_basebackup's tar, the archiver and its archive_commands), which \`time\`
does not see; **machine CPU s** is the whole machine's busy time over the run (\`/proc/stat\`), out
of $NPROC × wall. Sizes in MB = 10^6 bytes; **ratio** = the original bytes (the tar stream;
pgBackRest: the files) / stored.

Local repositories:

$(results_table "")
EOF
if [[ $REPOS == *s3* ]]; then
    cat <<EOF

Garage S3 on loopback (**Garage CPU s** and **TLS proxy CPU s**: those servers' CPU over the run,
which neither \`time\` nor the machine's share of the client shows apart):

$(results_table @s3)
EOF
else
    echo
    echo "Garage S3 rows: $S3_SKIPPED."
fi
cat <<EOF

Where the time went (median run): each process of the tree with when it was first and last seen
(s after the start), its CPU s and its largest RSS, and the busiest threads (name(pid): CPU s),
sampled from \`/proc/PID/task\` every 0.25 s (the last ~0.25 s of a thread may be missing; runuser
and time left out). pgkeep's tokio threads are all called \`tokio-rt-worker\`; zstd's workers
carry the name of the thread that started them.

| run | processes | busiest threads | minor page faults |
|---|---|---|---:|
EOF
for suf in "" $([[ $REPOS == *s3* ]] && echo @s3); do
    for name in $(names backup "$suf") $(names restore "$suf"); do
        has "$name" && echo "| $name | $(procs_line "$name") | $(r "$name" .threads) | $(r "$name" .minor_faults) |"
    done
done
cat <<EOF

### Goals (issue 12)

Physical backup in at most 0.5× pgBackRest's wall time with a peak RSS under 128 MiB; physical
restore (not started) in at most 0.8× pgBackRest's, memory bounded as for backup. Ratios of the
medians; "per round" divides round i of pgkeep by round i of pgBackRest. Peak RSS: the largest
\`/usr/bin/time\` maximum of any run of the row.

| pgkeep run | goal | measured (medians) | per round | time | peak RSS MiB | under 128 MiB |
|---|---|---|---|---|---:|---|
EOF
GOALS=$(goal_rows "")
[[ $REPOS == *s3* ]] && GOALS="$GOALS
$(goal_rows @s3)"
if [ -n "${GOALS//$'\n'/}" ]; then echo "$GOALS" | sed '/^$/d'; else echo "| (pgkeep not run) | | | | | | |"; fi
RAW=$(raw_lines)
if [ -n "$RAW" ]; then
    cat <<EOF

Against the raw tools (local repository; no goal, for reference):

$RAW
EOF
fi
STRACE_TEXT=
if has strace-io; then
    kib() { calc "%.1f" "$1 / 1024"; }
    SR_N=$(last_of strace-io .backup_reads); SR_B=$(last_of strace-io .backup_read_bytes)
    SW_N=$(last_of strace-io .restore_writes); SW_B=$(last_of strace-io .restore_write_bytes)
    SW_E=$(last_of strace-io .restore_write_eagain)
    [ "$SR_N" -gt 0 ] && STRACE_TEXT="Under \`strace -f\` (one more stream-mode backup, untimed), pgkeep read pg_basebackup's output in $SR_N reads of $(kib "$((SR_B / SR_N))") KiB on average."
    [ "$SW_N" -gt 0 ] && STRACE_TEXT="$STRACE_TEXT It wrote the tar stream of one more restore into tar's stdin in $SW_N writes of $(kib "$((SW_B / SW_N))") KiB on average ($SW_E refused with EAGAIN: the pipe was full)."
fi
cat <<EOF

### Where the CPU went

Between rounds the same command varied by up to $(jq -sr '[group_by(.name)[] | select(length > 1 and (.[0] | has("wall_s"))) | (map(.wall_s) | max / min - 1) * 100] | (max // 0) | round' "$RESULTS") % (see "all runs"): compare the medians,
and each round's ratio. Per median run:

$(for suf in "" $([[ $REPOS == *s3* ]] && echo @s3); do
    for name in $(names backup "$suf") $(names restore "$suf"); do explain "$name" "${suf:+ (S3)}"; done
done)

${STRACE_TEXT}

EOF
if want pgkeep; then
    cat <<EOF
### pgkeep beyond the timings

\`pgkeep list\` after the run (local repository; times are the run's):

\`\`\`
${PK_LIST//"$WORK"/\$WORK}
\`\`\`

\`pgkeep verify --wal\`:

\`\`\`
${PK_VERIFY_WAL//"$WORK"/\$WORK}
\`\`\`

One restore started for real, untimed: \`pgkeep restore --pgdata DIR --immediate --start --port $PORT2\`
(recovery through \`pgkeep wal-fetch\` to the end of the last backup) exited $PK_START_RC$([ -n "$PK_START_COUNTS" ] && echo "; the dataset there: $PK_START_COUNTS (expected $COUNTS)"):

\`\`\`
${PK_START_OUT//"$WORK"/\$WORK}
\`\`\`

EOF
fi
cat <<EOF
### Raw results

<details><summary>One JSON line per measurement (/usr/bin/time -v; server, Garage, proxy and machine CPU and processes from /proc)</summary>

\`\`\`json
$(sed "s|$WORK|\$WORK|g" "$RESULTS")
\`\`\`

</details>

Built in ${BUILD_SECONDS}s; the measurements (with the cluster and the dataset) took ${TOTAL_SECONDS}s; the scratch
directory held at most $(calc "%.1f" "$PEAK_DISK / 1e9") GB (\`du\` after each run). System identifier of the cluster: $SYSID.
EOF
} >"$WORK/report.md"
cp "$WORK/report.md" "$OUT.new"
mv "$OUT.new" "$OUT"
log "done in $(($(date +%s) - START))s: $OUT"
