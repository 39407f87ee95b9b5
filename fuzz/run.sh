#!/usr/bin/env bash
# Runs one fuzz target for a bounded time on the stable toolchain (RUSTC_BOOTSTRAP lets
# cargo-fuzz pass its -Z flags; AddressSanitizer's runtime ships with stable), starting from
# the shipped seeds. New inputs go to fuzz/corpus/<target> (not committed); a crash is saved to
# fuzz/artifacts/<target>/ and makes this script fail.
#   bash fuzz/run.sh TARGET [SECONDS]      (targets: case_file case_entries npz npy safetensors
#   quantized_model)
set -euo pipefail
cd "$(dirname "$0")"
target=${1:?usage: run.sh TARGET [SECONDS]}
seconds=${2:-60}
mkdir -p "corpus/$target"
RUSTC_BOOTSTRAP=1 cargo fuzz run -O "$target" "corpus/$target" "seeds/$target" -- \
    -max_total_time="$seconds" -max_len=262144 -rss_limit_mb=2048 -timeout=20 \
    -print_final_stats=1
