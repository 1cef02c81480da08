#!/usr/bin/env bash
# Builds the fuzz targets as libFuzzer binaries (clang, ASan + UBSan) in build-fuzz/ and runs each
# for a while over a scratch copy of its seed corpus (tests/fuzz/README.md).
#
#   tests/fuzz/run.sh [--seconds N] [--keep-corpus DIR] [--no-build] [TARGET...]
#
#   --seconds N        how long each target runs (default 60)
#   --no-build         run the binaries already in the build folder, without configuring or building
#   --keep-corpus DIR  merge the inputs that found new coverage into DIR/<target>/ (libFuzzer -merge=1);
#                      without it they are thrown away with the scratch folder: the repository stays clean
#   TARGET             record_reader_fuzz read_and_map_fuzz transaction_response_fuzz config_fuzz
#                      http_request_fuzz (default: all), with or without the _fuzz suffix
#
# Environment: FUZZ_BUILD_DIR (default build-fuzz), FUZZ_JOBS (build jobs, default 2),
# FUZZ_ARGS (more libFuzzer flags, e.g. "-max_len=65536").
# Exits 1 when any target finds a crash, a leak, a timeout or an out-of-memory, naming the saved input;
# 2 on a usage error. The scratch folder is kept when something was found.
set -euo pipefail

root="$(cd "$(dirname "$0")/../.." && pwd)"
all_targets=(record_reader_fuzz read_and_map_fuzz transaction_response_fuzz config_fuzz http_request_fuzz)

usage() {
  sed -n '4,/^set -euo/p' "$0" | grep '^#' | sed 's/^# \{0,1\}//' >&2
  exit 2
}

seconds=60
keep_corpus=""
build_first=1
targets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) [ $# -ge 2 ] || usage; seconds="$2"; shift 2 ;;
    --seconds=*) seconds="${1#*=}"; shift ;;
    --keep-corpus) [ $# -ge 2 ] || usage; keep_corpus="$2"; shift 2 ;;
    --keep-corpus=*) keep_corpus="${1#*=}"; shift ;;
    --no-build) build_first=0; shift ;;
    -h|--help) usage ;;
    -*) echo "run.sh: unknown option $1" >&2; usage ;;
    *)
      t="${1%_fuzz}_fuzz"
      if [[ " ${all_targets[*]} " != *" $t "* ]]; then
        echo "run.sh: unknown target $1 (one of: ${all_targets[*]})" >&2
        exit 2
      fi
      targets+=("$t"); shift ;;
  esac
done
[[ "$seconds" =~ ^[1-9][0-9]*$ ]] || { echo "run.sh: --seconds needs a whole number of seconds" >&2; exit 2; }
[ ${#targets[@]} -gt 0 ] || targets=("${all_targets[@]}")
if [ -n "$keep_corpus" ]; then
  mkdir -p "$keep_corpus"
  keep_corpus="$(cd "$keep_corpus" && pwd)"
fi

build="${FUZZ_BUILD_DIR:-$root/build-fuzz}"
jobs="${FUZZ_JOBS:-2}"
for tool in clang-14 clang++-14; do
  command -v "$tool" > /dev/null || { echo "run.sh: $tool is missing (apt-get install clang-14 libclang-rt-14-dev)" >&2; exit 2; }
done
if [ $build_first -eq 1 ]; then
  # The fuzz build uses libc++ (see MIGRAINE_FUZZ_LIBCXX in CMakeLists.txt).
  if ! echo '#include <vector>' | clang++-14 -stdlib=libc++ -x c++ -fsyntax-only - 2> /dev/null; then
    echo "run.sh: libc++ for clang 14 is missing (apt-get install libc++-14-dev libc++abi-14-dev)" >&2
    exit 2
  fi
  # Configure and build only the fuzz targets (and the libraries they link). The build folder
  # ignores itself, so git status stays clean without a .gitignore entry.
  start=$(date +%s)
  mkdir -p "$build"
  [ -e "$build/.gitignore" ] || echo '*' > "$build/.gitignore"
  if ! CC=clang-14 CXX=clang++-14 cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMIGRAINE_FUZZ=ON \
       > "$build/fuzz-configure.log" 2>&1; then
    cat "$build/fuzz-configure.log" >&2
    echo "run.sh: configuring $build failed" >&2
    exit 1
  fi
  if ! cmake --build "$build" -j "$jobs" --target "${targets[@]}" > "$build/fuzz-build.log" 2>&1; then
    tail -50 "$build/fuzz-build.log" >&2
    echo "run.sh: building the fuzz targets failed (full log: $build/fuzz-build.log)" >&2
    exit 1
  fi
  build_seconds=$(( $(date +%s) - start ))
  echo "run.sh: built ${targets[*]} in $build in ${build_seconds} s"
else
  for t in "${targets[@]}"; do
    [ -x "$build/bin/$t" ] || { echo "run.sh: --no-build: $build/bin/$t is not built" >&2; exit 2; }
  done
  build_seconds=0
  echo "run.sh: --no-build: running the binaries in $build as they are"
fi

scratch="$(mktemp -d "${TMPDIR:-/tmp}/migraine-fuzz.XXXXXX")"
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=1"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:+$UBSAN_OPTIONS:}halt_on_error=1:print_stacktrace=1:suppressions=$root/deploy/sanitizers.supp"
# shellcheck disable=SC2206
extra_args=(${FUZZ_ARGS:-})

stat_of() {  # stat_of LOG NAME: a value of -print_final_stats, or "?"
  local v
  v=$(sed -n "s/^stat::$2: *\([0-9][0-9]*\).*/\1/p" "$1" | tail -1)
  echo "${v:-?}"
}

found=0
summary=()
for t in "${targets[@]}"; do
  binary="$build/bin/$t"
  work="$scratch/$t"
  mkdir -p "$work/corpus" "$work/artifacts"
  cp -R "$root/tests/fuzz/corpus/$t/." "$work/corpus/"
  seeds=$(find "$work/corpus" -type f | wc -l)
  echo "run.sh: $t: ${seconds} s over $seeds seeds (log: $work/fuzz.log)"
  # Each target runs in its scratch folder: anything it might write lands there.
  set +e
  (cd "$work" && "$binary" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
     -artifact_prefix="$work/artifacts/" "${extra_args[@]}" "$work/corpus") > "$work/fuzz.log" 2>&1
  rc=$?
  set -e
  execs=$(stat_of "$work/fuzz.log" number_of_executed_units)
  rate=$(stat_of "$work/fuzz.log" average_exec_per_sec)
  added=$(stat_of "$work/fuzz.log" new_units_added)
  rss=$(stat_of "$work/fuzz.log" peak_rss_mb)
  cov=$(grep -o 'cov: [0-9]*' "$work/fuzz.log" | tail -1 | cut -d' ' -f2 || true)
  artifacts=$(find "$work/artifacts" -type f | sort)
  if [ $rc -ne 0 ] || [ -n "$artifacts" ]; then
    found=1
    result="FOUND (exit $rc)"
    echo "run.sh: $t: FOUND something (exit $rc). The report:" >&2
    grep -E -m1 -A30 '^==[0-9]+==ERROR|runtime error:|fuzz: property violated|ERROR: libFuzzer|ALARM: working on the last Unit|out-of-memory' \
      "$work/fuzz.log" >&2 || tail -40 "$work/fuzz.log" >&2
    for a in $artifacts; do echo "run.sh: $t: the input is saved as $a" >&2; done
    [ -n "$artifacts" ] || echo "run.sh: $t: no input was saved; see $work/fuzz.log" >&2
  else
    result="ok"
  fi
  if [ -n "$keep_corpus" ]; then
    mkdir -p "$keep_corpus/$t"
    (cd "$work" && "$binary" -merge=1 -timeout=10 -rss_limit_mb=2048 "$keep_corpus/$t" "$work/corpus") > "$work/merge.log" 2>&1 \
      || echo "run.sh: $t: merging into $keep_corpus/$t failed; see $work/merge.log" >&2
  fi
  summary+=("$(printf '%-28s %-16s %12s %10s %8s %8s %9s' "$t" "$result" "$execs" "$rate" "$added" "${cov:-?}" "$rss")")
done

echo
printf '%-28s %-16s %12s %10s %8s %8s %9s\n' target result executions exec/s new_units cov peak_MB
for line in "${summary[@]}"; do echo "$line"; done
if [ $build_first -eq 1 ]; then echo "build of $build: ${build_seconds} s; ${seconds} s per target"; else echo "${seconds} s per target (not rebuilt)"; fi
if [ -n "$keep_corpus" ]; then echo "new inputs merged into $keep_corpus/<target>/"; fi
if [ $found -ne 0 ]; then
  echo "run.sh: something was found; logs and inputs are kept in $scratch" >&2
  exit 1
fi
rm -rf "$scratch"
