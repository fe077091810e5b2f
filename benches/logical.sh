#!/usr/bin/env bash
# The logical backup benchmark (issues 3 and 12): `pgkeep backup logical` and `pgkeep restore --db`
# against the plain PostgreSQL tools on a throwaway PostgreSQL cluster holding one of the
# benchmark datasets (benches/common.sh), each run under /usr/bin/time -v; the pgkeep rows also
# into Garage S3 on loopback when Garage is there. Replaces the section "Logical backup and restore
# (issue 12, DATASET=...)" of docs/performance.md with the machine, the commands, the medians and
# every run, the memory peaks and the goals met or missed.
#
#   benches/logical.sh               # both datasets, one after the other; as root or a normal user
#   SCALE=1 RUNS=1 OUT=/tmp/l.md PGKEEP_BIN=target/release/pgkeep benches/logical.sh   # a quick check
#
# Environment (all optional):
#   DATASET="mixed pgbench"  the datasets (benches/common.sh): mixed = pgbench -s SCALE plus a table
#                     of 200 random bytes and an indexed md5 per row (~1.1 GB, ~3:1); pgbench =
#                     pgbench alone (~0.6 GB, ~23:1); each gets its own cluster and section
#   SCALE=40          pgbench scale factor (the blobs scale with it: 37 500 rows per unit)
#   BLOB_ROWS=n       rows of the mixed dataset's random table (default 37 500 × SCALE)
#   RUNS=5            how many times each measurement is repeated (the tables show the median)
#   S3=auto           auto: also pgkeep's rows against Garage S3 when a garage binary is found
#                     (PGKEEP_GARAGE_BIN, garage on PATH, ~/.cargo/bin/garage), else say why not;
#                     on: require them; off: leave them out
#   OUT=path          the report to write into (default: docs/performance.md of this checkout)
#   BENCH_DIR=dir     scratch directory (default: $TMPDIR or /tmp); holds the cluster (~1.1 GB of
#                     data + up to ~2 GB of WAL), a repository, the dump files and one restored
#                     database at a time (~6 GB at most at the defaults); removed at the end
#   PGBIN=dir         PostgreSQL binaries (default /usr/lib/postgresql/15/bin)
#   PGKEEP_BIN=path   measure this pgkeep binary instead of building target/release/pgkeep
#   GARAGE_ENV_BIN=path   the benches' garage-env binary instead of building it (S3 rows only)
#   QUIET_MAX=120     longest wait (s) for an idle machine before each measurement
#
# Needs: cargo, jq, zstd, GNU time (/usr/bin/time; `apt-get install -y time`), PostgreSQL 15 server
# and client binaries in $PGBIN. initdb and postgres refuse to run as root: as root, the cluster is
# run as the `postgres` OS user (runuser) in a directory it owns; the clients run as the caller.
# Single-quoted `bash -c` scripts and jq programs are expanded by bash and jq, not here:
# shellcheck disable=SC2016
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
log() { printf '[%s] %s\n' "$(date +%T)" "$*" >&2; }
# busy_s, wait_idle, describe_machine, the dataset, Garage and the report helpers
# shellcheck source=benches/common.sh
. "$ROOT/benches/common.sh"

# Several datasets: one run (its own cluster, its own section) each, one after the other.
DATASET=${DATASET:-mixed pgbench}
if [ "$(wc -w <<<"$DATASET")" -gt 1 ]; then
    for d in $DATASET; do
        log "DATASET=$d"
        DATASET=$d bash "$ROOT/benches/logical.sh"
    done
    exit 0
fi
dataset_init
OUT=${OUT:-$ROOT/docs/performance.md}
RUNS=${RUNS:-5}
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || bench_die "RUNS: a positive integer, not '$RUNS'"
[ "$RUNS" -ge 3 ] || log "RUNS=$RUNS: fewer than the 3 runs issue 12 asks for; the report will say so"
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
SECTION="## Logical backup and restore (issue 12, DATASET=$DATASET)"
# The section earlier versions of this script wrote (a pgbench database, the issue-3 goals):
# replaced by the issue-12 sections.
LEGACY_SECTION="## Logical backup and restore (issue 3)"

for tool in cargo jq zstd awk; do
    command -v "$tool" >/dev/null || { echo "logical.sh: $tool is required" >&2; exit 1; }
done
[ -x /usr/bin/time ] || { echo "logical.sh: GNU time is required: apt-get install -y time" >&2; exit 1; }
for tool in initdb pg_ctl postgres pg_dump pg_restore pgbench psql createdb; do
    [ -x "$PGBIN/$tool" ] || { echo "logical.sh: $PGBIN/$tool not found (set PGBIN)" >&2; exit 1; }
done

WORK=$(mktemp -d "${BENCH_DIR:-${TMPDIR:-/tmp}}/pgkeep-logical.XXXXXX")
PGDATA_DIR=$WORK/pgdata
PG_STARTED=
# as_pg CMD...: runs a server program as the owner of the cluster (the postgres OS user when root).
as_pg() {
    if [ "$(id -u)" = 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}
cleanup() {
    if [ -n "$PG_STARTED" ]; then
        as_pg "$PGBIN/pg_ctl" -D "$PGDATA_DIR" -m fast -w stop >/dev/null 2>&1 || true
    fi
    garage_stop
    rm -rf "$WORK"
}
trap cleanup EXIT

# ---------------------------------------------------------------------------------------------
S3_ROWS=
s3_wanted && S3_ROWS=1
[ -z "$S3_ROWS" ] && log "Garage S3 rows $S3_SKIPPED; S3=on requires them, S3=off silences this"
BUILD_SECONDS=0
TARGET_DIR=
target_dir() {
    [ -n "$TARGET_DIR" ] || TARGET_DIR=$(cd "$ROOT" && cargo metadata --format-version 1 --no-deps | jq -r .target_directory)
    echo "$TARGET_DIR"
}
if [ -n "${PGKEEP_BIN:-}" ]; then
    log "using $PGKEEP_BIN (PGKEEP_BIN; not built)"
    PGKEEP=$PGKEEP_BIN
else
    log "building (cargo build --release -p pgkeep)"
    build_start=$(date +%s)
    (cd "$ROOT" && cargo build --release -p pgkeep --quiet)
    BUILD_SECONDS=$(($(date +%s) - build_start))
    PGKEEP=$(target_dir)/release/pgkeep
fi
[ -x "$PGKEEP" ] || bench_die "$PGKEEP is not an executable (PGKEEP_BIN)"
GARAGE_ENV=
if [ -n "$S3_ROWS" ]; then
    if [ -n "${GARAGE_ENV_BIN:-}" ]; then
        GARAGE_ENV=$GARAGE_ENV_BIN
    else
        log "building (cargo build --release -p pgkeep-benches --bin garage-env)"
        build_start=$(date +%s)
        (cd "$ROOT" && cargo build --release -p pgkeep-benches --bin garage-env --quiet)
        BUILD_SECONDS=$((BUILD_SECONDS + $(date +%s) - build_start))
        GARAGE_ENV=$(target_dir)/release/garage-env
    fi
    [ -x "$GARAGE_ENV" ] || bench_die "$GARAGE_ENV is not an executable (GARAGE_ENV_BIN)"
fi
START=$(date +%s)

# ---------------------------------------------------------------------------------------------
# A throwaway cluster on a free loopback port, owned by the postgres OS user when run as root.
chmod 755 "$WORK"
mkdir -p "$PGDATA_DIR" "$WORK/sock" "$WORK/files" "$WORK/tmp"
[ "$(id -u)" = 0 ] && chown postgres: "$PGDATA_DIR" "$WORK/sock"
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
PORT=55432
while ! port_free "$PORT"; do PORT=$((PORT + 1)); done

log "initdb + start PostgreSQL on 127.0.0.1:$PORT"
as_pg "$PGBIN/initdb" -D "$PGDATA_DIR" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 --no-sync >"$WORK/initdb.log" 2>&1 \
    || { cat "$WORK/initdb.log" >&2; exit 1; }
PG_OPTS="-c listen_addresses=127.0.0.1 -c port=$PORT -c unix_socket_directories=$WORK/sock"
PG_OPTS="$PG_OPTS -c shared_buffers=1GB -c max_wal_size=2GB -c max_connections=20"
as_pg "$PGBIN/pg_ctl" -D "$PGDATA_DIR" -l "$WORK/sock/server.log" -o "$PG_OPTS" -w -t 60 start >/dev/null \
    || { cat "$WORK/sock/server.log" >&2; exit 1; }
PG_STARTED=1
PM_PID=$(head -1 "$PGDATA_DIR/postmaster.pid")

# Every client (pgkeep, pg_dump, pg_restore, psql) connects through the environment.
export PGHOST=127.0.0.1 PGPORT=$PORT PGUSER=postgres PGDATABASE=postgres
unset PGPASSWORD PGSERVICE PGPASSFILE PGKEEP_CONFIG PGKEEP_CLUSTER
export PGKEEP_REPO=file://$WORK/repo
export TMPDIR=$WORK/tmp      # where `pgkeep restore --jobs 2` stages the archive
cd "$WORK"                   # no ./pgkeep.toml from the caller's directory
sql() { "$PGBIN/psql" -X -q -At -v ON_ERROR_STOP=1 -d "${2:-postgres}" -c "$1"; }

log "loading DATASET=$DATASET (SCALE=$SCALE, BLOB_ROWS=$BLOB_ROWS) into bench"
load_dataset bench "$WORK/pgbench.log"
INIT_SECONDS=$LOAD_SECONDS
sql "CHECKPOINT"
DB_BYTES=$(sql "SELECT pg_database_size('bench')")
DB_PRETTY=$(sql "SELECT pg_size_pretty(pg_database_size('bench'))")
ACCOUNTS=$(sql "SELECT count(*) FROM pgbench_accounts" bench)
COUNTS=$(dataset_counts bench)
TABLES=$(dataset_tables bench)
SERVER_VERSION=$(sql "SHOW server_version")
log "bench: $DB_PRETTY ($DB_BYTES bytes), $COUNTS; $TABLES"

# ---------------------------------------------------------------------------------------------
RESULTS=$WORK/results.jsonl
: >"$RESULTS"
CLK_TCK=$(getconf CLK_TCK)
# CPU-seconds of the PostgreSQL server: the postmaster (with its exited children, which it reaps)
# and its live children (backends, checkpointer, walwriter, ...).
server_cpu_s() {
    {
        awk '{print $14 + $15 + $16 + $17}' "/proc/$PM_PID/stat"
        for p in $(pgrep -P "$PM_PID"); do
            awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || true
        done
    } | awk -v hz="$CLK_TCK" '{s += $1} END {printf "%.2f\n", s / hz}'
}
# wait_quiet: lets the server finish its background writes (CHECKPOINT), then waits (up to
# QUIET_MAX seconds) until the machine is idle — less than 0.1 of a core busy over 2 seconds.
QUIET_MAX=${QUIET_MAX:-120}
wait_quiet() {
    sql "CHECKPOINT"
    sync
    wait_idle
}
# sample_threads ROOT OUT: while ROOT runs, samples every 0.25 s the threads of ROOT's process tree
# from /proc (one grep and one awk per sample, to stay light on 2 cores), appending to OUT lines
# "T pid tid comm cpu_s" (each thread's CPU so far) and "P pid comm seconds" (process seen alive,
# seconds since ROOT started).
sample_threads() {
    local root=$1 out=$2 t0=$EPOCHREALTIME
    : >"$out"
    while kill -0 "$root" 2>/dev/null; do
        grep -H '' /proc/[0-9]*/task/[0-9]*/stat 2>/dev/null \
            | awk -v root="$root" -v hz="$CLK_TCK" -v now="$EPOCHREALTIME" -v t0="$t0" '
                {
                    split($0, parts, "/"); pid = parts[3]
                    line = $0; sub(/^[^:]*:/, "", line)
                    split(line, head, " "); tid = head[1]
                    comm = line; sub(/^[0-9]+ \(/, "", comm); sub(/\) [^)]*$/, "", comm); gsub(/ /, "_", comm)
                    rest = line; sub(/^.*\) /, "", rest); split(rest, f, " ")
                    if (tid == pid) { ppid[pid] = f[2]; pcomm[pid] = comm }
                    tpid[tid] = pid; tcomm[tid] = comm; tcpu[tid] = (f[12] + f[13]) / hz
                }
                END {
                    keep[root] = 1
                    do {
                        changed = 0
                        for (p in ppid) if (!(p in keep) && (ppid[p] in keep)) { keep[p] = 1; changed = 1 }
                    } while (changed)
                    for (t in tpid) if (tpid[t] in keep) printf "T %s %s %s %.2f\n", tpid[t], t, tcomm[t], tcpu[t]
                    for (p in keep) if (p in pcomm) printf "P %s %s %.1f\n", p, pcomm[p], now - t0
                }' >>"$out" || true
        sleep 0.25
    done
}

# garage_cpu_s: the Garage server's CPU-seconds so far (0 when it is not running).
garage_cpu_s() {
    if [ -n "$GARAGE_PID" ]; then proc_cpu_s "$GARAGE_SERVER_PID"; else echo 0; fi
}
# timed NAME CMD...: after wait_quiet, runs CMD under /usr/bin/time -v (stdout to $WORK/out.txt)
# and records wall, user+sys CPU and max RSS as reported by time, plus the PostgreSQL server's CPU,
# Garage's (S3 rows) and the whole machine's busy time over the same interval, as a JSON line
# tagged NAME.
timed() {
    local name=$1
    shift
    wait_quiet
    log "run: $name"
    local b0 b1 s0 s1 g0 g1 tpid
    b0=$(busy_s); s0=$(server_cpu_s); g0=$(garage_cpu_s)
    /usr/bin/time -v -o "$WORK/time.txt" "$@" >"$WORK/out.txt" 2>"$WORK/err.txt" &
    tpid=$!
    sample_threads "$tpid" "$WORK/threads.txt" &
    local spid=$!
    if ! wait "$tpid"; then
        wait "$spid" || true
        cat "$WORK/err.txt" "$WORK/time.txt" >&2
        echo "logical.sh: $name failed" >&2
        exit 1
    fi
    wait "$spid" || true
    b1=$(busy_s); s1=$(server_cpu_s); g1=$(garage_cpu_s)
    track_disk
    local wall user sys rss threads
    wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {n = split($2, t, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + t[i]; print s}' "$WORK/time.txt")
    user=$(awk -F': ' '/User time/ {print $2}' "$WORK/time.txt")
    sys=$(awk -F': ' '/System time/ {print $2}' "$WORK/time.txt")
    rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$WORK/time.txt")
    # Busiest threads ("comm(pid): CPU s", each thread's largest sample) and when each process ran,
    # the time process itself left out.
    touch "$WORK/threads.txt"
    local spans
    spans=$(awk -v skip="$tpid" '$1 == "P" && $2 != skip {
                if (!($2 in first)) { first[$2] = $4; name[$2] = $3 } last[$2] = $4 }
            END { for (p in first) printf "%s\t%s(%s) %s–%s s\n", first[p], name[p], p, first[p], last[p] }' "$WORK/threads.txt" \
        | sort -g | awk -F'\t' '{printf "%s%s", (NR > 1 ? ", " : ""), $2}')
    local spans_json
    spans_json=$(awk -v skip="$tpid" '$1 == "P" && $2 != skip {
                if (!($2 in first)) { first[$2] = $4; name[$2] = $3 } last[$2] = $4 }
            END { for (p in first) printf "{\"pid\": %s, \"comm\": \"%s\", \"from_s\": %s, \"to_s\": %s}\n", p, name[p], first[p], last[p] }' "$WORK/threads.txt" \
        | jq -sc 'sort_by(.from_s)')
    threads=$(awk -v skip="$tpid" '$1 == "T" && $2 != skip {
                k = $2 " " $3; name[k] = $4 "(" $2 ")"; if ($5 > cpu[k]) cpu[k] = $5 }
            END { for (k in cpu) if (cpu[k] >= 0.05) printf "%.2f\t%s\n", cpu[k], name[k] }' "$WORK/threads.txt" \
        | sort -gr | head -8 | awk -F'\t' '{printf "%s%s: %s", (NR > 1 ? ", " : ""), $2, $1}')
    jq -nc --arg name "$name" --argjson wall "$wall" --argjson user "$user" --argjson sys "$sys" \
        --argjson rss "$rss" --arg threads "$threads" --arg spans "$spans" --argjson spans_json "$spans_json" \
        --argjson server "$(awk -v a="$s0" -v b="$s1" 'BEGIN {printf "%.2f", b - a}')" \
        --argjson machine "$(awk -v a="$b0" -v b="$b1" 'BEGIN {printf "%.2f", b - a}')" \
        --argjson garage "$(awk -v a="$g0" -v b="$g1" 'BEGIN {printf "%.2f", b - a}')" \
        '{name: $name, wall_s: $wall, user_s: $user, sys_s: $sys, cpu_s: ((($user + $sys) * 100 | round) / 100),
          max_rss_mib: (($rss / 1024 * 10 | round) / 10), server_cpu_s: $server, garage_cpu_s: $garage, machine_busy_s: $machine, threads: $threads, processes: $spans, spans: $spans_json}' \
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
fsize() { stat -c %s "$1"; }
drop_db() { sql "DROP DATABASE IF EXISTS $1"; }
check_restored() {
    local n
    n=$(dataset_counts "$1")
    [ "$n" = "$COUNTS" ] || bench_die "$1 has $n, expected $COUNTS"
}

# ---------------------------------------------------------------------------------------------
log "machine"
describe_machine "$WORK"
ZSTD_CLI=$(zstd --version | sed 's/^\*\*\* //; s/ \*\*\*$//')
PG_DUMP_VERSION=$("$PGBIN/pg_dump" --version)
PGKEEP_VERSION=$("$PGKEEP" --version)
GIT_REV=$(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo unknown)
GIT_DIRTY=
if (cd "$ROOT" && git status --porcelain 2>/dev/null | grep -q .); then GIT_DIRTY=" (with uncommitted changes)"; fi

F=$WORK/files
PG_DUMP=$PGBIN/pg_dump
for run in $(seq "$RUNS"); do
    log "backups, run $run of $RUNS"
    timed pgkeep-backup "$PGKEEP" --json backup logical --db bench
    cp "$WORK/out.txt" "$WORK/manifest-$run.json"
    timed pg_dump-Fc "$PG_DUMP" -Fc -f "$F/bench.dump" bench
    timed pg_dump-Z0-zstd bash -c 'set -o pipefail; "$0" -Fc -Z0 bench | zstd -q -T2 -3 >"$1"' "$PG_DUMP" "$F/bench.dump.zst"
    timed pg_dump-Z0 bash -c 'set -o pipefail; "$0" -Fc -Z0 bench >/dev/null' "$PG_DUMP"
done
BACKUP_ID=$(jq -r .id "$WORK/manifest-1.json")
"$PGKEEP" --json list >"$WORK/list.json"
"$PGKEEP" --json info "$BACKUP_ID" >"$WORK/info.json"
record -n --slurpfile list "$WORK/list.json" --slurpfile info "$WORK/info.json" \
    --argjson fc "$(fsize "$F/bench.dump")" --argjson zst "$(fsize "$F/bench.dump.zst")" \
    '{name: "sizes", backup_id: $info[0].id,
      pgkeep_stored: ($list[0].backups[] | select(.id == $info[0].id) | .stored_size),
      pgkeep_raw: ($list[0].backups[] | select(.id == $info[0].id) | .size),
      object: ($info[0].objects[] | select(.database == "bench") | {key, size, stored_size, seconds}),
      pg_dump_fc: $fc, pg_dump_z0_zstd: $zst}'
OBJECT_FILE=$WORK/repo/$(jq -r '.objects[] | select(.database == "bench") | .key' "$WORK/info.json")

# restore_ref NAME DB ARCHIVE [-j2]: createdb + pg_restore of a file, timed together.
restore_ref() {
    timed "$1" bash -c '"$0/createdb" "$1" && "$0/pg_restore" $3 -d "$1" "$2"' "$PGBIN" "$2" "$3" "${4:-}"
    check_restored "$2"
    drop_db "$2"
}
for run in $(seq "$RUNS"); do
    log "restores, run $run of $RUNS"
    restore_ref pg_restore-j2 r3 "$F/bench.dump" -j2
    timed pgkeep-restore-j2 "$PGKEEP" restore --db bench --backup "$BACKUP_ID" --into r2 --jobs 2
    check_restored r2
    drop_db r2
    restore_ref pg_restore-serial r4 "$F/bench.dump"
    timed pgkeep-restore-serial "$PGKEEP" restore --db bench --backup "$BACKUP_ID" --into r1
    check_restored r1
    drop_db r1
    timed zstd-pg_restore-stdin bash -c 'set -o pipefail; "$0/createdb" r5 && zstd -q -dc "$1" | "$0/pg_restore" -d r5' "$PGBIN" "$F/bench.dump.zst"
    check_restored r5
    drop_db r5
    # Why `restore --jobs 2` differs: pg_restore -j2 of the very archive pgkeep stages (pg_dump wrote
    # it into a pipe, so its table of contents has no data offsets) against the same dump written by
    # pg_dump into a file (offsets filled in). One 1 GB file at a time, made outside the timing.
    zstd -q -dc "$OBJECT_FILE" >"$F/z0-pipe.dump"
    restore_ref pg_restore-j2-pipe-archive r6 "$F/z0-pipe.dump" -j2
    rm -f "$F/z0-pipe.dump"
    "$PG_DUMP" -Fc -Z0 -f "$F/z0-file.dump" bench
    restore_ref pg_restore-j2-file-archive r7 "$F/z0-file.dump" -j2
    rm -f "$F/z0-file.dump"
    # What reading the object back costs without a database: verify streams it (size, both sha256)
    # into `pg_restore --list`.
    timed pgkeep-verify "$PGKEEP" -q verify "$BACKUP_ID"
done
# The same pgkeep backup and restores against Garage S3 on loopback (a repository of their own,
# the keys in its configuration; PGKEEP_REPO left out so that the configuration's URL counts).
GARAGE_HWM=
GARAGE_S3_CPU=
if [ -n "$S3_ROWS" ]; then
    log "starting a throwaway Garage"
    garage_start "$GARAGE_ENV" "$WORK/garage.env"
    log "Garage at $AWS_ENDPOINT_URL (server pid $GARAGE_SERVER_PID, started in ${GARAGE_STARTUP_S}s)"
    S3_CONF=$WORK/pgkeep-s3.toml
    cat >"$S3_CONF" <<EOF
[repository]
url = "s3://$PGKEEP_BENCH_BUCKET/logical"

[repository.s3]
region = "$AWS_REGION"
endpoint = "$AWS_ENDPOINT_URL"
force-path-style = true
access-key-id = "$AWS_ACCESS_KEY_ID"
secret-access-key = "$AWS_SECRET_ACCESS_KEY"
EOF
    chmod 600 "$S3_CONF"
    PK_S3=(env -u PGKEEP_REPO "$PGKEEP" --config "$S3_CONF")
    g0=$(proc_cpu_s "$GARAGE_SERVER_PID")
    for run in $(seq "$RUNS"); do
        log "S3: backup, run $run of $RUNS"
        timed pgkeep-backup@s3 "${PK_S3[@]}" --json backup logical --db bench
        cp "$WORK/out.txt" "$WORK/manifest-s3-$run.json"
    done
    S3_BACKUP_ID=$(jq -r .id "$WORK/manifest-s3-1.json")
    for run in $(seq "$RUNS"); do
        log "S3: restores, run $run of $RUNS"
        timed pgkeep-restore-j2@s3 "${PK_S3[@]}" restore --db bench --backup "$S3_BACKUP_ID" --into s2 --jobs 2
        check_restored s2
        drop_db s2
        timed pgkeep-restore-serial@s3 "${PK_S3[@]}" restore --db bench --backup "$S3_BACKUP_ID" --into s1
        check_restored s1
        drop_db s1
    done
    GARAGE_HWM=$(awk '/^VmHWM/ {printf "%.0f", $2 / 1024}' "/proc/$GARAGE_SERVER_PID/status" 2>/dev/null || true)
    GARAGE_S3_CPU=$(calc "%.2f" "$(proc_cpu_s "$GARAGE_SERVER_PID") - $g0")
    garage_stop
fi
# The system calls behind it, on a small pgbench database (scale 1, 100 000 accounts): the same dump
# written into a pipe and into a file, each restored with pg_restore -j2 under `strace -c -f`.
LSEEK_PIPE=
LSEEK_FILE=
if command -v strace >/dev/null; then
    log "strace: pg_restore -j2 of an archive with and without data offsets (pgbench scale 1)"
    sql "CREATE DATABASE small"
    "$PGBIN/pgbench" -i -q -s 1 small >/dev/null 2>&1
    "$PG_DUMP" -Fc -Z0 small | cat >"$F/small-pipe.dump"
    "$PG_DUMP" -Fc -Z0 -f "$F/small-file.dump" small
    for kind in pipe file; do
        "$PGBIN/createdb" "small_$kind"
        strace -c -f -o "$WORK/strace-$kind.txt" "$PGBIN/pg_restore" -j2 -d "small_$kind" "$F/small-$kind.dump"
        drop_db "small_$kind"
    done
    LSEEK_PIPE=$(awk '$NF == "lseek" {print $4}' "$WORK/strace-pipe.txt")
    LSEEK_FILE=$(awk '$NF == "lseek" {print $4}' "$WORK/strace-file.txt")
    record -n --argjson p "${LSEEK_PIPE:-0}" --argjson f "${LSEEK_FILE:-0}" \
        '{name: "strace-lseek", bench: "strace -c -f pg_restore -j2, pgbench scale 1", lseek_pipe_archive: $p, lseek_file_archive: $f}'
    drop_db small
    rm -f "$F"/small-*.dump
fi
TOTAL_SECONDS=$(($(date +%s) - START))

# ---------------------------------------------------------------------------------------------
log "writing $OUT"
size() { jq -r "$1" <<<"$(jq -sc '[.[] | select(.name == "sizes")] | last' "$RESULTS")"; }
FC=$(size .pg_dump_fc)
ZST=$(size .pg_dump_z0_zstd)
PK=$(size .pgkeep_stored)
RAW=$(size .pgkeep_raw)

# max_rss NAME: the largest peak RSS (MiB, /usr/bin/time) of any run tagged NAME.
max_rss() { jq -sr --arg name "$1" '[.[] | select(.name == $name) | .max_rss_mib] | max' "$RESULTS"; }
if [ -n "$S3_ROWS" ]; then
    S3_TEXT="Garage $GARAGE_VERSION on 127.0.0.1 (\`garage-env\`: the test kit's single-node server, sqlite metadata, data on the same disk; peak RSS ${GARAGE_HWM:-?} MiB, $GARAGE_S3_CPU CPU-seconds over the S3 rows); pgkeep's \`[repository.s3]\` defaults (16 MiB parts, 4 in flight)"
else
    S3_TEXT="not run: $S3_SKIPPED"
fi
row() { # row NAME LABEL [STORED]
    local b stored=${3:-} ratio="–" shown="–"
    b=$(median "$1")
    if [ -n "$stored" ]; then
        shown="$(mb "$stored") MB"
        ratio=$(calc "%.3f" "$stored / $FC")
    fi
    jq -r --arg lbl "$2" --arg stored "$shown" --arg ratio "$ratio" --arg all "$(walls "$1")" \
        '"| \($lbl) | **\(.wall_s)** | \($all) | \(.user_s) + \(.sys_s) = \(.cpu_s) | \(.server_cpu_s) | \(.machine_busy_s) | \(.max_rss_mib) | \($stored) | \($ratio) |"' <<<"$b"
}

PB=$(r pgkeep-backup .wall_s)
PIPE=$(r pg_dump-Z0-zstd .wall_s)
FCW=$(r pg_dump-Fc .wall_s)
Z0W=$(r pg_dump-Z0 .wall_s)
PRJ=$(r pgkeep-restore-j2 .wall_s)
RJ=$(r pg_restore-j2 .wall_s)
PRS=$(r pgkeep-restore-serial .wall_s)
RS=$(r pg_restore-serial .wall_s)
RSTDIN=$(r zstd-pg_restore-stdin .wall_s)
RJ_PIPE=$(r pg_restore-j2-pipe-archive .wall_s)
RJ_FILE=$(r pg_restore-j2-file-archive .wall_s)
B_RATIO=$(calc "%.3f" "$PB / $PIPE")
R_RATIO=$(calc "%.3f" "$PRJ / $RJ")
S_RATIO=$(calc "%.3f" "$PRS / $RS")
SS_RATIO=$(calc "%.3f" "$PRS / $RSTDIN")
G_BACKUP=$(goal "$B_RATIO" 1.0)
G_SIZE=$(awk -v a="$PK" -v b="$FC" 'BEGIN {print (a < b ? "**met**" : "**missed**")}')
G_RESTORE=$(goal "$R_RATIO" 1.05)
# Per-round ratios (round i of pgkeep against round i of the reference, pair_ratios) show the spread.
B_PAIRS=$(pair_ratios pgkeep-backup pg_dump-Z0-zstd)
R_PAIRS=$(pair_ratios pgkeep-restore-j2 pg_restore-j2)
RS_J_RATIO=$(calc "%.3f" "$PRS / $RJ")
G_RESTORE_SERIAL=$(goal "$RS_J_RATIO" 1.05)
RS_PAIRS=$(pair_ratios pgkeep-restore-serial pg_restore-j2)

{
# This section and the legacy one are replaced (each up to the next level-2 heading or the end).
if [ -f "$OUT" ]; then
    without_sections "$OUT" "$SECTION" "$LEGACY_SECTION"
    echo
fi
cat <<EOF
$SECTION

\`pgkeep backup logical\` and \`pgkeep restore --db\` next to \`pg_dump\` / \`pg_restore\` on a database
holding the \`$DATASET\` dataset$([ -n "$S3_ROWS" ] && echo ", pgkeep also into Garage S3 on loopback"), generated by \`benches/logical.sh\` on $(date -u +%Y-%m-%d) at
commit \`$GIT_REV\`$GIT_DIRTY ($PGKEEP_VERSION). Compare speeds only within this run. Rerun it with:

\`\`\`sh
DATASET=$DATASET benches/logical.sh   # builds, runs everything (~$((TOTAL_SECONDS / 60 + 1)) min here), replaces this section
\`\`\`

### Setup

| | |
|---|---|
| CPU | $CPU_MODEL, \`nproc\` = $NPROC |
| Memory | $MEM |
| Kernel | $KERNEL (a VM) |
| Disk | $DISK (one virtual disk for the cluster, the repository, Garage's data, the dump files and TMPDIR) |
| PostgreSQL | $SERVER_VERSION, a throwaway cluster on 127.0.0.1 on the same machine (\`initdb --locale=C.UTF-8\`; \`shared_buffers=1GB\`, \`max_wal_size=2GB\`, fsync on, the rest default) |
| Tools | $PG_DUMP_VERSION (and pg_restore of the same version); $ZSTD_CLI |
| Dataset | \`DATASET=$DATASET\`: $DATASET_TEXT (${INIT_SECONDS}s to create, then \`VACUUM ANALYZE\`): \`pg_database_size('bench')\` = $DB_BYTES bytes ($DB_PRETTY); $COUNTS; $TABLES |
| S3 | $S3_TEXT |

Every command below runs alone — before each the script runs \`CHECKPOINT\` and waits until the
machine is idle — under \`/usr/bin/time -v\`, connecting through \`PGHOST=127.0.0.1 PGPORT=$PORT PGUSER=postgres\`.
pgkeep uses its defaults (zstd level 3, one worker per CPU, i.e. 2) and a local-directory repository
(\`PGKEEP_REPO=file://\$WORK/repo\`, same disk); \`TMPDIR=\$WORK/tmp\`:

\`\`\`sh
pgkeep --json backup logical --db bench                        # pg_dump -Fc -Z0 into pgkeep's pipeline → repository
pg_dump -Fc -f bench.dump bench                                # its default compression (gzip, level 6)
bash -c 'pg_dump -Fc -Z0 bench | zstd -q -T2 -3 > bench.dump.zst'
bash -c 'pg_dump -Fc -Z0 bench > /dev/null'                     # the dump alone, for reference
bash -c 'createdb r3 && pg_restore -j2 -d r3 bench.dump'
pgkeep restore --db bench --backup ID --into r2 --jobs 2       # staged into a file in TMPDIR, then pg_restore -j2
bash -c 'createdb r4 && pg_restore -d r4 bench.dump'
pgkeep restore --db bench --backup ID --into r1                # streamed into pg_restore's stdin
bash -c 'createdb r5 && zstd -q -dc bench.dump.zst | pg_restore -d r5'   # serial from stdin, for reference
bash -c 'createdb r6 && pg_restore -j2 -d r6 z0-pipe.dump'     # z0-pipe.dump = zstd -dc of pgkeep's object
bash -c 'createdb r7 && pg_restore -j2 -d r7 z0-file.dump'     # z0-file.dump = pg_dump -Fc -Z0 -f z0-file.dump bench
pgkeep -q verify ID                                            # reads the object back into pg_restore --list
$([ -n "$S3_ROWS" ] && echo "# S3, after the rounds above, RUNS rounds of each; pgkeep-s3.toml: url = \"s3://$PGKEEP_BENCH_BUCKET/logical\", the keys in [repository.s3]")
$([ -n "$S3_ROWS" ] && echo "pgkeep --config pgkeep-s3.toml --json backup logical --db bench")
$([ -n "$S3_ROWS" ] && echo "pgkeep --config pgkeep-s3.toml restore --db bench --backup ID --into s2 --jobs 2")
$([ -n "$S3_ROWS" ] && echo "pgkeep --config pgkeep-s3.toml restore --db bench --backup ID --into s1")
\`\`\`

The reference restores include their \`createdb\`, as pgkeep's restores include creating the target.
Each restore is checked (the row counts: $COUNTS) and dropped before the next.
The whole list ran $RUNS times, one round after the other; the tables show, per command, the run
with the **median** wall time, and list every run's.$([ "$RUNS" -lt 3 ] && printf '\n%s' "**RUNS=$RUNS: fewer than the 3 runs issue 12 asks for; a check of the script, not a result.**")

### Results

**CPU s** is what \`/usr/bin/time\` reports for the measured process and the children it waited for
(pg_dump or pg_restore under pgkeep, every side of a \`bash -c\` pipeline). **Peak RSS** is
\`/usr/bin/time\`'s "maximum resident set size": the largest *single* process of that tree, not their
sum (for pgkeep, pgkeep itself or its pg_dump / pg_restore child, whichever is larger).
**Server CPU s** is the PostgreSQL server's (postmaster, backends and background processes, from
\`/proc\`), which \`time\` does not see; **machine CPU s** is the whole machine's busy time over the
run (\`/proc/stat\`), out of 2 × wall. Sizes in MB = 10^6 bytes; the ratio is to \`pg_dump -Fc\`'s file.

| run | wall s (median) | all runs, wall s | CPU s (user + sys) | server CPU s | machine CPU s | peak RSS MiB | stored | vs pg_dump -Fc |
|---|---:|---|---:|---:|---:|---:|---:|---:|
EOF
row pgkeep-backup "\`pgkeep backup logical\`" "$PK"
row pg_dump-Fc "\`pg_dump -Fc\`" "$FC"
row pg_dump-Z0-zstd "\`pg_dump -Fc -Z0 \| zstd -T2 -3\`" "$ZST"
row pg_dump-Z0 "\`pg_dump -Fc -Z0 > /dev/null\` (size: the uncompressed archive)" "$RAW"
row pgkeep-restore-j2 "\`pgkeep restore --jobs 2\`"
row pg_restore-j2 "\`pg_restore -j2\` (the -Fc file)"
row pgkeep-restore-serial "\`pgkeep restore\` (serial, stdin)"
row pg_restore-serial "\`pg_restore\` (serial, the -Fc file)"
row zstd-pg_restore-stdin "\`zstd -dc \| pg_restore\` (serial, stdin)"
row pg_restore-j2-pipe-archive "\`pg_restore -j2\` of pgkeep's archive (no data offsets)"
row pg_restore-j2-file-archive "\`pg_restore -j2\` of \`pg_dump -Fc -Z0 -f\` (offsets)"
row pgkeep-verify "\`pgkeep verify\`"
if [ -n "$S3_ROWS" ]; then
    cat <<EOF

Garage S3 on loopback (**Garage CPU s**: the server's CPU over the run; **vs local**: the median's
wall time over the same pgkeep command's into the local repository):

| run | wall s (median) | all runs, wall s | CPU s (user + sys) | server CPU s | Garage CPU s | machine CPU s | peak RSS MiB | vs local |
|---|---:|---|---:|---:|---:|---:|---:|---:|
EOF
    for pair in "pgkeep-backup@s3:\`pgkeep backup logical\`" "pgkeep-restore-j2@s3:\`pgkeep restore --jobs 2\`" "pgkeep-restore-serial@s3:\`pgkeep restore\` (serial, stdin)"; do
        name=${pair%%:*}
        median "$name" | jq -r --arg lbl "${pair#*:}" --arg all "$(walls "$name")" \
            --arg vs "$(calc "%.3f" "$(r "$name" .wall_s) / $(r "${name%@s3}" .wall_s)")" \
            '"| \($lbl) | **\(.wall_s)** | \($all) | \(.user_s) + \(.sys_s) = \(.cpu_s) | \(.server_cpu_s) | \(.garage_cpu_s) | \(.machine_busy_s) | \(.max_rss_mib) | \($vs)× |"'
    done
else
    echo
    echo "Garage S3 rows: $S3_SKIPPED."
fi
cat <<EOF

pgkeep's object \`$(size .object.key)\` holds the $RAW-byte archive (\`size\`) in $PK bytes
(\`stored_size\`, from \`pgkeep --json list\`); the \`zstd -T2 -3\` pipe wrote $ZST bytes.

Where the time went: the processes of each run (median run) with when they were first and last
seen, and the busiest threads (CPU s), sampled from \`/proc/PID/task\` every 0.25 s (so the last
~0.25 s of a thread may be missing). All of pgkeep's tokio threads are called \`tokio-rt-worker\`
(the blocking ones read pg_dump's output, hash it and feed zstd, or decompress and hash the stored
bytes); the main thread, \`pgkeep\`, runs the top-level future (a restore's copy into pg_restore or
into the staging file, with the sha256 of the original stream); zstd's workers carry the name of
the thread that started them; \`time\` itself is left out.

| run | processes (seen from–to, s after the start) | busiest threads (name(pid): CPU s) |
|---|---|---|
EOF
for name in pgkeep-backup pg_dump-Z0-zstd pg_dump-Z0 pgkeep-restore-j2 pg_restore-j2 pgkeep-restore-serial zstd-pg_restore-stdin pg_restore-j2-pipe-archive pg_restore-j2-file-archive \
    $([ -n "$S3_ROWS" ] && echo pgkeep-backup@s3 pgkeep-restore-j2@s3 pgkeep-restore-serial@s3); do
    r "$name" '"| \(.name) | \(.processes) | \(.threads) |"'
done
cat <<EOF

### Goals (issue 12)

| goal | measured (medians) | per round | |
|---|---|---|---|
| backup within 1.0× the wall time of \`pg_dump -Fc -Z0 \| zstd -T2 -3\` | $PB s / $PIPE s = $B_RATIO× | $B_PAIRS | $G_BACKUP |
| backup smaller than \`pg_dump -Fc\` | $(mb "$PK") MB / $(mb "$FC") MB = $(calc "%.3f" "$PK / $FC")× | – | $G_SIZE |
| \`restore --db --jobs 2\` within 1.05× the wall time of \`pg_restore -j2\` of the -Fc file | $PRJ s / $RJ s = $R_RATIO× | $R_PAIRS | $G_RESTORE |
| the same for the default \`pgkeep restore\` (serial, streamed into pg_restore's stdin) | $PRS s / $RJ s = $RS_J_RATIO× | $RS_PAIRS | $G_RESTORE_SERIAL |

Peak RSS (\`/usr/bin/time\`, largest of any run): backup $(max_rss pgkeep-backup) MiB, \`restore --jobs 2\` $(max_rss pgkeep-restore-j2) MiB,
serial restore $(max_rss pgkeep-restore-serial) MiB.

Serial restores, for reference: pgkeep $PRS s against \`pg_restore\` of the file $RS s ($S_RATIO×) and
\`zstd -dc | pg_restore\` from stdin $RSTDIN s ($SS_RATIO×). \`pg_dump -Fc\` took $FCW s, the dump alone
(\`-Z0\` into /dev/null) $Z0W s.

Reference numbers measured earlier on this kind of machine with another, 2.5 GB database (far less
compressible than pgbench's): \`pg_dump -Fc\` 78 s / 805 MB; \`pg_dump -Fc -Z0 | zstd -3 -T2\` 24 s /
721 MB; \`pg_dump -Z0\` alone 20 s; \`pg_restore -j2\` 49 s, serial 65 s, serial from stdin 71 s.

EOF
} >"$WORK/report.md"

# ---------------------------------------------------------------------------------------------
# The interpretation: numbers pulled from the results, the reasoning written once.
GIB=$(calc "%.3f" "$RAW / 1073741824")
PB_CPU=$(r pgkeep-backup .cpu_s)
PIPE_CPU=$(r pg_dump-Z0-zstd .cpu_s)
Z0_CPU=$(r pg_dump-Z0 .cpu_s)
PB_SRV=$(r pgkeep-backup .server_cpu_s)
PIPE_SRV=$(r pg_dump-Z0-zstd .server_cpu_s)
PB_MACH=$(r pgkeep-backup .machine_busy_s)
PIPE_MACH=$(r pg_dump-Z0-zstd .machine_busy_s)
PK_OWN=$(calc "%.2f" "$PB_CPU - $Z0_CPU")
ZSTD_OWN=$(calc "%.2f" "$PIPE_CPU - $Z0_CPU")
SHA_EST=$(calc "%.2f" "$GIB * 0.51")
PB_RSS=$(r pgkeep-backup .max_rss_mib)
PR_RSS=$(r pgkeep-restore-serial .max_rss_mib)
PRJ_RSS=$(r pgkeep-restore-j2 .max_rss_mib)
STAGE=$(r pgkeep-restore-j2 '[.spans[] | select(.comm == "pg_restore") | .from_s] | min // 0')
PRJ_REST=$(calc "%.1f" "$PRJ - $STAGE")
RJ_PIPE_CPU=$(r pg_restore-j2-pipe-archive .cpu_s)
RJ_FILE_CPU=$(r pg_restore-j2-file-archive .cpu_s)
RJ_CPU=$(r pg_restore-j2 .cpu_s)
VERIFY=$(r pgkeep-verify .wall_s)
RJ_SRV=$(r pg_restore-j2 .server_cpu_s)
RS_SRV=$(r pg_restore-serial .server_cpu_s)
RATIO_RAW=$(calc "%.0f" "$RAW / $PK")
read -r SPREAD_MIN SPREAD_MAX < <(jq -sr '[group_by(.name)[] | select(length > 1 and (.[0] | has("wall_s")))
    | (map(.wall_s) | max / min - 1) * 100] | "\((min // 0) | round) \((max // 0) | round)"' "$RESULTS")
STRACE_NOTE=
if [ -n "$LSEEK_PIPE" ]; then
    STRACE_NOTE=" Under \`strace -c -f\`, \`pg_restore -j2\` of a pgbench scale-1 database (100 000
   accounts) made ${LSEEK_PIPE:-0} \`lseek\` calls from the archive pg_dump wrote into a pipe and ${LSEEK_FILE:-0} from the
   one it wrote into a file."
fi

if awk -v x="$B_RATIO" 'BEGIN {exit !(x >= 0.95 && x <= 1.05)}'; then
    BACKUP_NOISE="Here the medians differ by $(calc "%.0f" "($B_RATIO - 1) * 100") %, less than the run-to-run noise."
else
    BACKUP_NOISE="Here the medians differ by $(calc "%.0f" "($B_RATIO - 1) * 100") % (pgkeep against the pipe)."
fi
if [ "$G_BACKUP" = "**met**" ]; then
    BACKUP_VERDICT="**Backup time: met** ($B_RATIO× the pipe's wall time; per round $B_PAIRS)."
else
    BACKUP_VERDICT="**Backup time: missed** ($B_RATIO× the pipe's wall time; per round $B_PAIRS)."
fi
# What the data says, in sentences that hold whichever way the numbers fall.
if [ "$DATASET" = pgbench ]; then
    DATA_TEXT="**This database is extremely compressible.** pgbench's accounts rows are mostly a blank
\`filler\` column: the $(mb "$RAW") MB archive compresses ${RATIO_RAW}:1 with zstd -3"
    TABLES_TEXT="pgbench has one big table, so \`-j2\` has little to parallelise"
else
    DATA_TEXT="**The archive compresses ${RATIO_RAW}:1** with zstd -3 ($(mb "$RAW") MB into $(mb "$PK") MB): pgbench's accounts rows
are mostly a blank \`filler\` column, while the \`blobs\` table's 200 random bytes a row do not
compress at all (its md5 text, hexadecimal, about 2:1)"
    TABLES_TEXT="This database has two large tables (\`pgbench_accounts\` and \`blobs\`), which \`-j2\` loads at once"
fi
if awk -v a="$PB_SRV" -v w="$PB" 'BEGIN {exit !(a >= 0.8 * w)}'; then
    SERVER_TEXT="The backup is bound by the server: the backend running \`COPY ... TO STDOUT\` used $PB_SRV s of CPU in
a $PB s backup ($PIPE_SRV s in the $PIPE s pipe), so it is busy nearly the whole time, and nothing
downstream makes the dump faster than it produces data:"
else
    SERVER_TEXT="The server's backend running \`COPY ... TO STDOUT\` used $PB_SRV s of CPU in a $PB s backup
($(calc "%.0f" "100 * $PB_SRV / $PB") % of the wall time; $PIPE_SRV s in the $PIPE s pipe), so the client side counts here too; for reference,"
fi
if awk -v a="$PB_MACH" -v b="$PIPE_MACH" -v w1="$PB" -v w2="$PIPE" -v n="$NPROC" 'BEGIN {exit !(a >= 0.85 * n * w1 && b >= 0.85 * n * w2)}'; then
    CORES_TEXT="both keep the $NPROC cores nearly full, so more client CPU would come out of the server's share."
else
    CORES_TEXT="$(calc "%.2f" "$PB_MACH / $PB") and $(calc "%.2f" "$PIPE_MACH / $PIPE") of the $NPROC cores on average."
fi
if awk -v a="$PRS" -v b="$PRJ" 'BEGIN {exit !(a < b)}'; then
    FASTER_TEXT="the **serial** \`pgkeep restore\`, streamed into pg_restore's stdin, is the faster pgkeep restore of this
database ($PRS s against $PRJ s with \`--jobs 2\`, which pays for its staging)"
else
    FASTER_TEXT="\`pgkeep restore --jobs 2\` is the faster pgkeep restore of this database ($PRJ s against $PRS s serial,
streamed into pg_restore's stdin), its staging paid for by loading tables at once"
fi
RESTORE_VERDICT="**Restore:** the default \`pgkeep restore\` (streamed into pg_restore) took $PRS s against $RJ s for \`pg_restore -j2\` ($RS_J_RATIO×, ${G_RESTORE_SERIAL//\*/}; per round $RS_PAIRS); \`pgkeep restore --jobs 2\` took $PRJ s ($R_RATIO×, ${G_RESTORE//\*/}; per round $R_PAIRS)."

cat >>"$WORK/report.md" <<EOF
### Interpretation

$DATA_TEXT. Between rounds, the same command's slowest run was $SPREAD_MIN–$SPREAD_MAX % slower than its
fastest (see "all runs"), to be set against the margins the goals allow (backup 1.0×, restore
1.05×); the verdicts compare medians of $RUNS rounds and show each round's ratio.

$BACKUP_VERDICT $SERVER_TEXT
\`pg_dump -Z0\` into /dev/null took $Z0W s. On the client side pgkeep (with its pg_dump) used
$PB_CPU CPU-seconds against $PIPE_CPU s for \`pg_dump | zstd\`; pg_dump alone uses $Z0_CPU s, so pgkeep's
own share is about $PK_OWN s against the zstd CLI's $ZSTD_OWN s. pgkeep does one thing more: the
single-threaded sha256 of the original stream on its compression thread (0.51 s/GiB in the pipeline
benchmark above, ≈ $SHA_EST s for these $GIB GiB; the hash of the stored bytes is negligible at this
ratio), and it moves each byte once more (pipe → tokio → the blocking compression thread).
The machine was busy $PB_MACH CPU-seconds during pgkeep's backup and $PIPE_MACH s during the pipe's,
out of $NPROC × wall: $CORES_TEXT $BACKUP_NOISE

**Size: ${G_SIZE//\*/}.** pgkeep stores zstd level 3 like the pipe ($PK bytes against
$ZST: the same dump and level, differing by the dump's timestamps and zstd's framing),
$(calc "%.2f" "$PK / $FC")× \`pg_dump -Fc\`'s gzip file — on this data; on the reference database the
same choice gave 721 MB against 805 MB (0.9×).

$RESTORE_VERDICT Where the extra time of \`--jobs 2\` goes:

1. **Staging.** With \`--jobs\` above 1, pgkeep first decompresses the whole archive into a file in
   TMPDIR (decompression, both sha256 passes, writing $(mb "$RAW") MB) and walks it once to fill in
   the data offsets (below); only then does pg_restore start: it was first seen ≈ $STAGE s after
   the start (sampled every 0.25 s). Reading the object back alone (\`pgkeep verify\`) takes $VERIFY s.
   pg_restore -j needs a seekable file, so this part cannot overlap with the restore.
2. **Data offsets.** pg_dump fills in the data offsets of the archive's table of contents only when
   its output is seekable; pgkeep runs it into a pipe, so the archive it stores has none, and
   pg_restore's parallel workers would find a table's data by skipping through the archive from the
   start, block by block — an uncompressed (\`-Z0\`) archive has one small block per row
   ($ACCOUNTS here in \`pgbench_accounts\`), each skipped with its own \`lseek\`.$STRACE_NOTE The
   same $(mb "$RAW") MB dump with \`pg_restore -j2\`: $RJ_PIPE s and $RJ_PIPE_CPU CPU-seconds of
   pg_restore from the archive as stored, against $RJ_FILE s and $RJ_FILE_CPU s when pg_dump wrote it
   to a file ($RJ s and $RJ_CPU s from the gzip \`-Fc\` file). pgkeep therefore writes the offsets
   into the staged file (\`pgkeep_core::archive::add_data_offsets\`, the same bytes pg_dump writes
   when it can seek; tested against pg_dump's own), so its pg_restore reads like the file case.
   After its staging, pgkeep's pg_restore ran ≈ $PRJ_REST s.

pg_restore's own work — the server's, really — dominates every restore: the server used $RJ_SRV s of
CPU during \`pg_restore -j2\` and $RS_SRV s during the serial one (loading the rows, then building
the indexes). $TABLES_TEXT: serial and \`-j2\` restores of the -Fc file took $RS s and $RJ s
here. Of pgkeep's two, $FASTER_TEXT. The serial one took $SS_RATIO× the \`zstd -dc | pg_restore\`
pipe and $(calc "%.3f" "$PRS / $RJ")× \`pg_restore -j2\` (${G_RESTORE_SERIAL//\*/} against the restore goal's 1.05×).

**Memory.** pgkeep's peak RSS was $PB_RSS MiB for the backup (the multi-threaded zstd encoder; pg_dump
itself stays near 10 MiB), $PR_RSS MiB for the serial restore and $PRJ_RSS MiB with \`--jobs 2\`. The
memory of the whole process tree is not measured (\`/usr/bin/time\` gives the largest single process),
and the server's shared buffers are outside it either way.
EOF

cat >>"$WORK/report.md" <<EOF

### Raw results

<details><summary>One JSON line per measurement (/usr/bin/time -v; server and machine CPU, threads and processes from /proc)</summary>

\`\`\`json
$(cat "$RESULTS")
\`\`\`

</details>

Built in ${BUILD_SECONDS}s; the measurements (with the cluster and \`pgbench -i\`) took ${TOTAL_SECONDS}s; the scratch
directory held at most $(calc "%.1f" "$PEAK_DISK / 1e9") GB (\`du\` after each run, before the restored database is dropped).
EOF
cp "$WORK/report.md" "$OUT.new"
mv "$OUT.new" "$OUT"
log "done: $OUT"
