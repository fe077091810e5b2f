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

# bench_die MESSAGE: the calling script's name, the message, exit 1.
bench_die() { echo "$(basename "$0"): $*" >&2; exit 1; }

# proc_cpu_s PID: CPU-seconds of process PID so far (all its threads, and the children it waited
# for); 0 when it is gone.
proc_cpu_s() {
    awk -v hz="$(getconf CLK_TCK)" '{printf "%.2f\n", ($14 + $15 + $16 + $17) / hz}' "/proc/$1/stat" 2>/dev/null || echo 0
}

# ---------------------------------------------------------------------------------------------
# The benchmark database (issue 12). Set before dataset_init:
#   DATASET=mixed     `pgbench -i -s SCALE` plus a table `blobs` of BLOB_ROWS rows, each 200 random
#                     bytes (bytea) and their md5 as text with an index: about 1.1 GB at the
#                     defaults, compressing about 3:1 (zstd -1)
#   DATASET=pgbench   `pgbench -i -s SCALE` alone: about 0.6 GB at SCALE=40, compressing about 23:1
#                     (pgbench_accounts is mostly a blank filler column), which hides the cost of
#                     compression
#   SCALE=40          pgbench scale factor; SCALE=1 (about 30 MB with the blobs) to validate a script
#   BLOB_ROWS         rows of `blobs` (default 37 500 per unit of SCALE: 1.5 M at SCALE=40)
# The callers define sql QUERY [DB] (psql -At against the cluster) and PGBIN.

# dataset_init: checks and completes DATASET, SCALE and BLOB_ROWS.
# shellcheck disable=SC2034 # the callers read them
dataset_init() {
    DATASET=${DATASET:-mixed}
    case $DATASET in
        mixed | pgbench) ;;
        *) bench_die "DATASET: unknown dataset '$DATASET' (mixed or pgbench)" ;;
    esac
    SCALE=${SCALE:-40}
    [[ $SCALE =~ ^[1-9][0-9]*$ ]] || bench_die "SCALE: a positive integer, not '$SCALE'"
    if [ "$DATASET" = mixed ]; then
        BLOB_ROWS=${BLOB_ROWS:-$((SCALE * 37500))}
        [[ $BLOB_ROWS =~ ^[1-9][0-9]*$ ]] || bench_die "BLOB_ROWS: a positive integer, not '$BLOB_ROWS'"
    else
        BLOB_ROWS=0
    fi
}

# load_dataset DB LOG: creates database DB and fills it with $DATASET (pgbench's output into LOG),
# then VACUUM ANALYZE, so that the measured commands find settled pages (hint bits set, nothing
# left for autovacuum). Sets LOAD_SECONDS and DATASET_TEXT (what DB holds, for the reports).
# shellcheck disable=SC2034 # the callers read them
load_dataset() {
    local db=$1 log=$2 t0 payload
    sql "CREATE DATABASE $db"
    t0=$(date +%s)
    "$PGBIN/pgbench" -i -q -s "$SCALE" "$db" >"$log" 2>&1 || { cat "$log" >&2; bench_die "pgbench -i failed"; }
    DATASET_TEXT="\`pgbench -i -s $SCALE\`"
    if [ "$BLOB_ROWS" -gt 0 ]; then
        # pgcrypto's gen_random_bytes when the server has it (it is dropped again afterwards, so
        # that the dumps hold no extension), else 13 md5 of random() per row (slower).
        if [ "$(sql "SELECT count(*) FROM pg_available_extensions WHERE name = 'pgcrypto'")" = 1 ]; then
            sql "CREATE EXTENSION IF NOT EXISTS pgcrypto" "$db"
            payload="gen_random_bytes(200)"
        else
            payload="(SELECT substring(decode(string_agg(md5(random()::text || i || j), ''), 'hex') FROM 1 FOR 200) FROM generate_series(1, 13) j)"
        fi
        sql "CREATE TABLE blobs (id integer NOT NULL, payload bytea NOT NULL, digest text NOT NULL)" "$db"
        sql "INSERT INTO blobs SELECT i, p, md5(p) FROM (SELECT i, $payload AS p FROM generate_series(1, $BLOB_ROWS) i) s" "$db"
        sql "CREATE INDEX blobs_digest ON blobs (digest)" "$db"
        [ "$payload" = "gen_random_bytes(200)" ] && sql "DROP EXTENSION pgcrypto" "$db"
        DATASET_TEXT="$DATASET_TEXT plus \`blobs\`: $BLOB_ROWS rows of 200 random bytes (\`bytea\`) and their md5 (\`text\`, with an index)"
    fi
    sql "VACUUM ANALYZE" "$db"
    LOAD_SECONDS=$(($(date +%s) - t0))
}

# dataset_counts DB: the row counts a restored copy of the dataset must have, as one line.
dataset_counts() {
    if [ "$BLOB_ROWS" -gt 0 ]; then
        sql "SELECT format('%s accounts, %s blobs', (SELECT count(*) FROM pgbench_accounts), (SELECT count(*) FROM blobs))" "$1"
    else
        sql "SELECT format('%s accounts', (SELECT count(*) FROM pgbench_accounts))" "$1"
    fi
}

# dataset_tables DB: the dataset's tables with their total sizes (indexes included), largest first.
dataset_tables() {
    sql "SELECT string_agg(format('%s %s', relname, pg_size_pretty(pg_total_relation_size(oid))), ', ' ORDER BY pg_total_relation_size(oid) DESC)
         FROM pg_class WHERE relkind = 'r' AND (relname LIKE 'pgbench%' OR relname = 'blobs')" "$1"
}

# ---------------------------------------------------------------------------------------------
# Garage S3 on loopback, for the S3 rows. S3=auto (default) runs them when a garage binary is
# found and says why not otherwise; S3=on requires them; S3=off leaves them out.

# garage_binary: prints the garage binary the test kit would use (PGKEEP_GARAGE_BIN, garage on
# PATH, ~/.cargo/bin/garage); fails when there is none.
garage_binary() {
    if [ -n "${PGKEEP_GARAGE_BIN:-}" ]; then
        [ -x "$PGKEEP_GARAGE_BIN" ] && echo "$PGKEEP_GARAGE_BIN"
        return
    fi
    command -v garage 2>/dev/null && return 0
    [ -x "$HOME/.cargo/bin/garage" ] && echo "$HOME/.cargo/bin/garage"
}

# s3_wanted: whether to run the S3 rows (S3=auto|on|off); sets S3_SKIPPED to the reason when not.
# shellcheck disable=SC2034 # the callers read it
s3_wanted() {
    S3_SKIPPED=
    case ${S3:-auto} in
        off) S3_SKIPPED="left out (S3=off)"; return 1 ;;
        on | auto) ;;
        *) bench_die "S3: auto, on or off, not '$S3'" ;;
    esac
    garage_binary >/dev/null && return 0
    [ "${S3:-auto}" = on ] && bench_die "S3=on but no garage binary: set PGKEEP_GARAGE_BIN, put garage on PATH or install it to ~/.cargo/bin/garage (cargo install garage --locked)"
    S3_SKIPPED="skipped: no garage binary (PGKEEP_GARAGE_BIN, garage on PATH or ~/.cargo/bin/garage)"
    return 1
}

# garage_start GARAGE_ENV OUT: starts the throwaway server (benches' garage-env binary, the test
# kit's Garage) and waits for it; exports its AWS_* variables, PGKEEP_BENCH_BUCKET and GARAGE_DIR,
# sets GARAGE_PID (garage-env), GARAGE_SERVER_PID and GARAGE_VERSION. Stop it with garage_stop.
GARAGE_PID=
GARAGE_DIR=
# shellcheck disable=SC2034 # the callers read them
garage_start() {
    local env_bin=$1 out=$2 _i
    "$env_bin" >"$out" 2>"$out.err" &
    GARAGE_PID=$!
    for _i in $(seq 600); do
        grep -q READY "$out" 2>/dev/null && break
        kill -0 "$GARAGE_PID" 2>/dev/null || { cat "$out.err" >&2; bench_die "garage-env failed"; }
        sleep 0.1
    done
    grep -q READY "$out" || bench_die "Garage did not start within 60 s (see $out.err)"
    # shellcheck disable=SC1090
    . "$out"
    GARAGE_SERVER_PID=$(pgrep -P "$GARAGE_PID" | head -1)
    GARAGE_VERSION=$("/proc/$GARAGE_SERVER_PID/exe" --version 2>/dev/null | head -1 || echo garage)
}
garage_stop() {
    if [ -n "$GARAGE_PID" ]; then
        kill "$GARAGE_PID" 2>/dev/null || true
        wait "$GARAGE_PID" 2>/dev/null || true
        GARAGE_PID=
    fi
    if [ -n "$GARAGE_DIR" ]; then rm -rf "$GARAGE_DIR"; fi
    GARAGE_DIR=
}

# tls_proxy_start TARGET_PORT DIR: a TLS-terminating TCP proxy on 127.0.0.1 (python3's asyncio
# and ssl, a self-signed certificate made with openssl in DIR) in front of 127.0.0.1:TARGET_PORT.
# pgBackRest speaks S3 only over HTTPS and Garage only plain HTTP. Sets TLS_PROXY_PID and
# TLS_PROXY_PORT; stop it with tls_proxy_stop.
TLS_PROXY_PID=
# shellcheck disable=SC2034 # the callers read it
tls_proxy_start() {
    local target=$1 dir=$2 _i python
    python=$(command -v /usr/bin/python3 python3 | head -1) || bench_die "python3 is needed for the TLS proxy in front of Garage"
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 \
        -keyout "$dir/tls-key.pem" -out "$dir/tls-cert.pem" >/dev/null 2>&1 || bench_die "openssl could not make a certificate"
    cat >"$dir/tls-proxy.py" <<'PY'
import asyncio, ssl, sys

target_port, cert, key = int(sys.argv[1]), sys.argv[2], sys.argv[3]

async def pump(reader, writer):
    try:
        while data := await reader.read(1 << 18):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, ssl.SSLError, OSError):
        pass
    finally:
        writer.close()

async def handle(client_r, client_w):
    try:
        up_r, up_w = await asyncio.open_connection("127.0.0.1", target_port)
    except OSError:
        client_w.close()
        return
    await asyncio.gather(pump(client_r, up_w), pump(up_r, client_w))

async def main():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=ctx)
    print("PORT", server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()

asyncio.run(main())
PY
    "$python" "$dir/tls-proxy.py" "$target" "$dir/tls-cert.pem" "$dir/tls-key.pem" >"$dir/tls-proxy.out" 2>"$dir/tls-proxy.err" &
    TLS_PROXY_PID=$!
    for _i in $(seq 100); do
        grep -q '^PORT ' "$dir/tls-proxy.out" 2>/dev/null && break
        kill -0 "$TLS_PROXY_PID" 2>/dev/null || { cat "$dir/tls-proxy.err" >&2; bench_die "the TLS proxy failed"; }
        sleep 0.1
    done
    TLS_PROXY_PORT=$(awk '/^PORT / {print $2}' "$dir/tls-proxy.out")
    [ -n "$TLS_PROXY_PORT" ] || bench_die "the TLS proxy did not start (see $dir/tls-proxy.err)"
}
tls_proxy_stop() {
    if [ -n "$TLS_PROXY_PID" ]; then
        kill "$TLS_PROXY_PID" 2>/dev/null || true
        wait "$TLS_PROXY_PID" 2>/dev/null || true
        TLS_PROXY_PID=
    fi
}

# ---------------------------------------------------------------------------------------------
# Report helpers over $RESULTS (one JSON line per measurement, each with a name).

calc() { awk "BEGIN {printf \"$1\", $2}"; }
mb() { calc "%.1f" "$1 / 1000000"; }
has() { jq -se --arg name "$1" 'any(.[]; .name == $name)' "$RESULTS" >/dev/null; }
# median NAME: the run tagged NAME with the median wall time (the upper one of an even count).
median() { jq -sc --arg name "$1" '[.[] | select(.name == $name)] | sort_by(.wall_s) | .[length / 2 | floor]' "$RESULTS"; }
# walls NAME: every run's wall time, in the order they ran.
walls() { jq -sr --arg name "$1" '[.[] | select(.name == $name) | .wall_s] | join(", ")' "$RESULTS"; }
# r NAME JQ: JQ applied to the median run of NAME.
r() { median "$1" | jq -r "$2"; }
# goal X LIMIT: met when X <= LIMIT.
goal() { awk -v x="$1" -v lim="$2" 'BEGIN {print (x <= lim ? "**met**" : "**missed**")}'; }
# pair_ratios A B: run i of A's wall time over run i of B's, for every i (the spread of a ratio).
pair_ratios() {
    jq -sr --arg a "$1" --arg b "$2" '[.[] | select(.name == $a) | .wall_s] as $x | [.[] | select(.name == $b) | .wall_s] as $y
        | [range(0; [($x | length), ($y | length)] | min) | ($x[.] / $y[.] * 100 | round / 100)] | join(", ")' "$RESULTS"
}
# without_sections FILE HEADING...: FILE without the level-2 sections of those headings (each up
# to the next level-2 heading or the end), trailing blank lines removed.
without_sections() {
    local file=$1
    shift
    awk -v list="$(printf '%s\n' "$@")" 'BEGIN {n = split(list, h, "\n"); for (i = 1; i <= n; i++) if (h[i] != "") drop[h[i]] = 1}
        ($0 in drop) {skip = 1; next} skip && /^## / {skip = 0} !skip' "$file" | sed -e :a -e '/^\n*$/{$d;N;ba' -e '}'
}
