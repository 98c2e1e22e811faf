#!/usr/bin/env bash
# Runs every fuzz target for SECONDS (default 30) with its seeds, then
# prints per target: executions, coverage (libFuzzer's final cov: / ft:)
# and crashes. A crash input is copied to
# tests/fuzz_regression/cases/TARGET-<sha1>.bin (replayed on stable by
# `cargo test -p sluice-tests --test fuzz_regression`) and the script
# exits 1.
#
#   fuzz/run.sh [SECONDS] [TARGET...]
#
# Environment: FUZZ_SANITIZER (address | none | ..., default address),
# FUZZ_TOOLCHAIN (default +nightly), FUZZ_ARGS (extra libFuzzer flags),
# FUZZ_DEV=1 (unoptimised build: compiles several times faster, runs
# slower; what CI's few-second smoke uses).
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
cd "$here" || exit 2

duration=${1:-30}
shift || true
case $duration in
'' | *[!0-9]*)
    echo "usage: $0 [SECONDS] [TARGET...]" >&2
    exit 2
    ;;
esac

all_targets=(parse_plain parse_geneve quoted geneve_options gateway vpc_port_out vpc_port_in switch_uplink vnic_config api_bodies)
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=("${all_targets[@]}")

toolchain=${FUZZ_TOOLCHAIN:-+nightly}
sanitizer=${FUZZ_SANITIZER:-address}
cases="$root/tests/fuzz_regression/cases"
logs="$here/artifacts/logs"
mkdir -p "$logs"

# The seed folders of each target: keep in step with
# `seed_dirs` in tests/fuzz_regression/checks.rs.
seeds_of() {
    case $1 in
    parse_plain | gateway | vpc_port_out) echo frames ;;
    parse_geneve | vpc_port_in | switch_uplink) echo geneve frames ;;
    quoted) echo icmp ;;
    geneve_options) echo options ;;
    vnic_config) echo config ;;
    api_bodies) echo api ;;
    *) return 1 ;;
    esac
}

# Extra libFuzzer flags per target: frames long enough to reach the MTU
# checks (1280-byte IPv6 minimum, 1514-byte guest frames), and a JSON
# dictionary for the configuration.
flags_of() {
    case $1 in
    parse_plain | parse_geneve | gateway | vpc_port_out | vpc_port_in | switch_uplink) echo -max_len=2048 ;;
    vnic_config) echo "-dict=$here/dicts/vnic_config.dict -max_len=4096" ;;
    api_bodies) echo "-dict=$here/dicts/api_bodies.dict -max_len=4096" ;;
    esac
}

echo "building ${#targets[@]} target(s) (sanitizer: $sanitizer${FUZZ_DEV:+, unoptimised})..."
build_args=(--sanitizer "$sanitizer")
[ -n "${FUZZ_DEV:-}" ] && build_args+=(--dev)
if [ ${#targets[@]} -eq ${#all_targets[@]} ]; then
    cargo "$toolchain" fuzz build "${build_args[@]}" || exit 2
else
    for t in "${targets[@]}"; do
        cargo "$toolchain" fuzz build "${build_args[@]}" "$t" || exit 2
    done
fi

crashed=0
summary=()
for t in "${targets[@]}"; do
    dirs=$(seeds_of "$t") || {
        echo "unknown target $t" >&2
        exit 2
    }
    corpus="$here/corpus/$t"
    mkdir -p "$corpus"
    seed_args=()
    for d in $dirs; do seed_args+=("$here/seeds/$d"); done
    log="$logs/$t.log"
    echo "== $t: ${duration}s"
    # shellcheck disable=SC2046,SC2086
    cargo "$toolchain" fuzz run "${build_args[@]}" "$t" "$corpus" "${seed_args[@]}" -- \
        -max_total_time="$duration" -timeout=10 -print_final_stats=1 \
        $(flags_of "$t") ${FUZZ_ARGS:-} >"$log" 2>&1
    rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    last=$(grep -E '^#[0-9]+.* cov: ' "$log" | tail -1)
    [ -z "$execs" ] && execs=$(sed -E -n 's/^#([0-9]+).*/\1/p' <<<"$last")
    cov=$(sed -E -n 's/.* cov: ([0-9]+).*/\1/p' <<<"$last")
    ft=$(sed -E -n 's/.* ft: ([0-9]+).*/\1/p' <<<"$last")
    corp=$(sed -E -n 's/.* corp: ([0-9]+).*/\1/p' <<<"$last")
    crash="0"
    if [ $rc -ne 0 ]; then
        crashed=1
        crash="1"
        artifact=$(sed -E -n 's/.*Test unit written to (.*)$/\1/p' "$log" | tail -1)
        if [ -n "$artifact" ] && [ -f "$artifact" ]; then
            sha=$(sha1sum "$artifact" | cut -d' ' -f1)
            mkdir -p "$cases"
            cp "$artifact" "$cases/$t-$sha.bin"
            crash="1 -> tests/fuzz_regression/cases/$t-$sha.bin"
        else
            crash="1 (exit $rc, no artifact: see $log)"
        fi
        echo "   CRASH in $t (log: $log):"
        grep -E -m1 -A3 'panicked at|ERROR: (AddressSanitizer|libFuzzer)' "$log" | sed 's/^/     /'
    fi
    line=$(printf '%-15s execs %-10s cov %-6s ft %-6s corpus %-5s crashes %s' \
        "$t" "${execs:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}" "$crash")
    echo "   $line"
    summary+=("$line")
done

echo
echo "summary (${duration}s per target):"
printf '  %s\n' "${summary[@]}"
if [ $crashed -ne 0 ]; then
    echo "crashes found: add the saved cases to the fix's commit; they replay in" \
        "'cargo test -p sluice-tests --test fuzz_regression'" >&2
    exit 1
fi
