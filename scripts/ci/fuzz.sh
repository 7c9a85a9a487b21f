#!/usr/bin/env bash
# Runs every cargo fuzz target for SECONDS each (default 20), starting from the tracked seeds
# (fuzz/seeds/TARGET), the inputs that once crashed (fuzz/regressions/TARGET) and, when there
# is one, the local working corpus (fuzz/corpus/TARGET, ignored by git).
#
#   scripts/ci/fuzz.sh 20            the CI smoke: new inputs go to a scratch directory
#   scripts/ci/fuzz.sh 600 --keep    a long run: new inputs are kept in fuzz/corpus (not tracked)
#   scripts/ci/fuzz.sh 60 query      one target
#
# Built with `cargo fuzz build -s none` on the stable toolchain (RUSTC_BOOTSTRAP=1 lets it
# pass libFuzzer's flags); debug assertions and overflow checks are on. A crash fails the
# script and leaves the input in fuzz/artifacts/TARGET/; make it a regression test by copying
# it to fuzz/regressions/TARGET/ once fixed.
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-20}
shift || true
keep=no
targets=()
for a in "$@"; do
  case $a in
    --keep) keep=yes ;;
    *) targets+=("$a") ;;
  esac
done
export RUSTC_BOOTSTRAP=1
command -v cargo-fuzz >/dev/null || cargo install --locked --quiet cargo-fuzz --version 0.13.2
cd fuzz
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cargo fuzz list)
fi
cargo fuzz build -s none 2>&1 | grep -v '^ *Compiling' || true
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
status=0
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t" "seeds/$t" "regressions/$t"
  # libFuzzer adds new inputs to the first directory
  if [ $keep = yes ]; then dirs=("corpus/$t"); else dirs=("$scratch/$t" "corpus/$t"); mkdir -p "$scratch/$t"; fi
  dirs+=("seeds/$t" "regressions/$t")
  log=$scratch/$t.log
  if cargo fuzz run -s none "$t" "${dirs[@]}" -- -max_total_time="$secs" -rss_limit_mb=2048 \
      -max_len=65536 -timeout=10 -print_final_stats=1 >"$log" 2>&1; then
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    cov=$(grep -E '^#[0-9]+' "$log" | tail -1 | grep -o 'cov: [0-9]*' || true)
    # the plateau: edges covered half-way through the run (by executions) against the end,
    # and how far into the run the edge count last grew (`INITED` is the corpus loaded).
    # Features (`ft:`) keep growing on text grammars long after edges stop; edges are the measure.
    inited=$(grep -E '^#[0-9]+[[:space:]]+INITED' "$log" | head -1 | sed -E 's/^#([0-9]+).*/\1/' || true)
    # (counted from the end of the corpus replay: a short run may not even finish it)
    start=${inited:-0}
    read -r half_cov end_cov last_grew < <(grep -E '^#[0-9]+[[:space:]].*cov: [0-9]+' "$log" |
      sed -E 's/^#([0-9]+).*cov: ([0-9]+).*/\1 \2/' |
      awk -v half=$((start + (${execs:-0} - start) / 2)) '{ if ($1 <= half) h = $2; if ($2 > e) { e = $2; g = $1 } }
        END { print (h == "" ? e : h) + 0, e + 0, g + 0 }')
    if [ -z "$inited" ]; then
      plateau="the corpus was not replayed within the run"
    elif [ "${end_cov:-0}" -eq "${half_cov:-0}" ]; then
      plateau="edges flat over the second half (last grew at run $last_grew; corpus $inited)"
    else
      plateau="edges $half_cov -> $end_cov over the second half (last grew at run $last_grew, $((100 * last_grew / execs)) % in)"
    fi
    printf 'fuzz %-17s ok: %s runs in %s s, %s; %s\n' "$t" "$execs" "$secs" "$cov" "$plateau"
  else
    status=1
    printf 'fuzz %-17s FAILED:\n' "$t"
    # a crash names itself; anything else (a build error) shows its last lines
    grep -E 'panicked|ERROR|SUMMARY|Test unit written|deadly' "$log" | head -8 || tail -20 "$log"
  fi
done
exit $status
