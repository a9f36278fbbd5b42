#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
#
# Builds the libFuzzer targets (clang, ASan + UBSan) and fuzzes each for a bounded time, for CI:
#   fuzz/run-short.sh                 # 30 s per target
#   FUZZ_SECONDS=60 fuzz/run-short.sh
#   KG_FUZZ_SKIP=ipv6 fuzz/run-short.sh   # go on past a known, reported disagreement class
# New inputs go to a scratch directory, not to the committed corpus; crashes are written under
# $BUILD/fuzz-artifacts/ and make the script fail. Minimise a grown corpus with
#   $BUILD/fuzz/fuzz_origin -merge=1 <fresh dir> fuzz/corpus/origin <scratch dir>
# (likewise fuzz_body_scan and fuzz/corpus/body_scan; fuzz/<target>.dict, when present, is passed as -dict).
set -eu

cd "$(dirname "$0")/.."
BUILD=${FUZZ_BUILD_DIR:-build-fuzz}
SECONDS_PER_TARGET=${FUZZ_SECONDS:-30}

if [ -f "$BUILD/build.ninja" ]; then
    meson configure "$BUILD" -Dfuzz=true
else
    CC=clang CXX=clang++ meson setup "$BUILD" -Dfuzz=true -Db_sanitize=address,undefined -Db_lundef=false
fi
ninja -C "$BUILD" fuzz

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT INT TERM
mkdir -p "$BUILD/fuzz-artifacts"

for target in origin body_scan; do
    mkdir -p "$scratch/$target"
    "./$BUILD/fuzz/fuzz_$target" \
        -max_total_time="$SECONDS_PER_TARGET" \
        -artifact_prefix="$BUILD/fuzz-artifacts/$target-" \
        -print_final_stats=1 \
        -error_exitcode=1 \
        $( [ -f "fuzz/$target.dict" ] && echo "-dict=fuzz/$target.dict" ) \
        "$scratch/$target" "fuzz/corpus/$target"
done

# Every past failing input, replayed once.
meson test -C "$BUILD" --no-rebuild --suite fuzz-regress
