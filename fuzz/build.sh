#!/usr/bin/env bash
# Builds every fuzz target (or those named) with libFuzzer's coverage instrumentation on the
# stable toolchain: LLVM's SanitizerCoverage pass, asked for through `-Cpasses` and
# `-Cllvm-args` (both stable), gives libFuzzer its edge counters, PC table and comparison
# hooks; no sanitizer is enabled, since those need nightly. `--target` keeps the flags off build
# scripts and proc macros, which run on the host and must not be instrumented.
# Prints the binaries' folder on its last line.
set -euo pipefail
cd "$(dirname "$0")"
host="$(rustc -vV | sed -n 's/^host: //p')"
export RUSTFLAGS="-Cpasses=sancov-module \
-Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
-Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares \
--cfg fuzzing -Cforce-frame-pointers=yes"
# The project's CARGO_TARGET_DIR, if set, is not this crate's: its builds have other flags.
export CARGO_TARGET_DIR="$PWD/target"
bins=()
for target in "$@"; do bins+=(--bin "$target"); done
if [ "${#bins[@]}" = 0 ]; then bins=(--bins); fi
# Not --locked: fuzz/Cargo.lock pins what it can, and a dependency the project adds later is
# resolved into it rather than failing the build.
cargo build --release --target "$host" "${bins[@]}" >&2
echo "$PWD/target/$host/release"
