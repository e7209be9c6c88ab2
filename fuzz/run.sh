#!/usr/bin/env bash
# Runs teewatch's fuzz targets under libFuzzer: fuzz/run.sh [SECONDS per target] [TARGET...]
# (default 60 s and every target of fuzz/Cargo.toml). Builds them (fuzz/build.sh), cuts the seed
# corpora from tests/ (fuzz/seeds.py), loads each target's regression inputs
# (fuzz/regressions/TARGET/) beside its corpus, fuzzes, and prints per target the executions,
# the coverage libFuzzer reached (`cov`: edges, `ft`: features) once the seeds were loaded and at
# the end, and whether it crashed. A crashing input is left in fuzz/artifacts/TARGET/; fix the
# bug, then keep the input as fuzz/regressions/TARGET/<name> so that `cargo test` replays it.
# Exits 1 when any target crashed, timed out or ran out of memory.
# FUZZ_SEED fixes libFuzzer's random seed (default: libFuzzer picks one and prints it);
# FUZZ_JOBS sets how many targets run at once (default 1).
set -euo pipefail
cd "$(dirname "$0")"
fuzz="$PWD"

seconds="${1:-60}"
shift || true
case "$seconds" in
'' | *[!0-9]*)
    echo "usage: fuzz/run.sh [SECONDS per target] [TARGET...]; expected a whole number of seconds, found '$seconds'" >&2
    exit 2
    ;;
esac
all="$(sed -n 's/^name = "\(.*\)"$/\1/p' Cargo.toml | grep -v '^teewatch-fuzz$')"
if [ "$#" -gt 0 ]; then
    targets=("$@")
    for t in "${targets[@]}"; do
        grep -qx "$t" <<<"$all" || {
            echo "fuzz/run.sh: unknown target '$t'; expected one of: $(echo $all)" >&2
            exit 2
        }
    done
else
    mapfile -t targets <<<"$all"
fi

started=$SECONDS
bin="$(./build.sh "${targets[@]}" | tail -1)"
echo "built ${#targets[@]} target(s) in $((SECONDS - started)) s"
python3 seeds.py

run_one() {
    local t="$1" log="$fuzz/artifacts/$1.log"
    mkdir -p "$fuzz/artifacts/$t" "$fuzz/corpus/$t" "$fuzz/regressions/$t"
    local seed=()
    if [ -n "${FUZZ_SEED:-}" ]; then seed=(-seed="$FUZZ_SEED"); fi
    # New inputs go into the first folder (the corpus); the regressions are only read.
    set +e
    "$bin/$t" "$fuzz/corpus/$t" "$fuzz/regressions/$t" \
        -max_total_time="$seconds" -print_final_stats=1 -max_len=65536 \
        -rss_limit_mb=2048 -timeout=20 -error_exitcode=77 -timeout_exitcode=78 \
        -artifact_prefix="$fuzz/artifacts/$t/" "${seed[@]}" >"$log" 2>&1
    echo $? >"$log.status"
    set -e
}

jobs="${FUZZ_JOBS:-1}"
for t in "${targets[@]}"; do
    run_one "$t" &
    while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n || true; done
done
wait

# libFuzzer's status lines: "#1234 INITED cov: 567 ft: 890 corp: ...", "#9999 DONE cov: ...".
field() { sed -n "s/.*$2 cov: \([0-9]*\) ft: \([0-9]*\).*/\1 \2/p" "$1" | tail -1; }
stat() { sed -n "s/^stat::$2: *\([0-9]*\).*/\1/p" "$1" | tail -1; }
failed=0
printf '\n%-16s %6s %11s %8s %16s %16s %7s  %s\n' target seconds executions exec/s \
    "edges (cov)" "features (ft)" corpus result
for t in "${targets[@]}"; do
    log="$fuzz/artifacts/$t.log"
    status="$(cat "$log.status")"
    read -r cov0 ft0 <<<"$(field "$log" INITED)"
    read -r cov1 ft1 <<<"$(field "$log" DONE)"
    if [ -z "${cov1:-}" ]; then
        # A crash stops the run before DONE: the last status line is the furthest it got.
        read -r cov1 ft1 <<<"$(sed -n 's/.* cov: \([0-9]*\) ft: \([0-9]*\).*/\1 \2/p' "$log" | tail -1)"
    fi
    case "$status" in
    0) result=ok ;;
    77) result="CRASH: $(grep -m1 -o 'artifact_prefix.*Test unit written to .*' "$log" | sed 's/.*written to //')" ;;
    78) result="TIMEOUT: $(grep -m1 -o 'Test unit written to .*' "$log" | sed 's/.*written to //')" ;;
    *) result="FAILED (exit $status): see $log" ;;
    esac
    if [ "$status" != 0 ]; then
        failed=1
        if [ "$status" = 77 ] || [ "$status" = 78 ]; then
            result="${result:-see $log}"
            grep -m1 -A12 -E "panicked at|ERROR: libFuzzer" "$log" | sed 's/^/    /' >&2 || true
        fi
    fi
    printf '%-16s %6s %11s %8s %16s %16s %7s  %s\n' "$t" "$seconds" \
        "$(stat "$log" number_of_executed_units)" "$(stat "$log" average_exec_per_sec)" \
        "${cov0:-?} -> ${cov1:-?}" "${ft0:-?} -> ${ft1:-?}" \
        "$(ls "$fuzz/corpus/$t" | wc -l)" "$result"
done
echo "fuzz/run.sh: ${#targets[@]} target(s), ${seconds} s each, $((SECONDS - started)) s in all; logs in fuzz/artifacts/"
exit "$failed"
