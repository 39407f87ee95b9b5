# Sourced by .ci/run and .ci/emulated_cpus: the golden fixture sets, each with the flavours its
# `expected` and `expected_xnnpack` outputs were made in, checked in one place.

# check_fixture_sets LABEL COMMAND...: runs `COMMAND check` on every set (COMMAND is the
# hybridq binary, with a prefix such as an emulator if any), prints each set's summary line
# after LABEL, and fails unless every case of every set passed.
check_fixture_sets() {
    local label=$1
    shift
    local set flavour xnn dirs summary
    for set in "tflite-x86 xnnpack fixtures/hybrid fixtures/int8 fixtures/samples" \
        "tflite-arm64 xnnpack-arm64 fixtures/aarch64_litert-2.3.0_cortex-a72" \
        "tflite-arm64-dotprod xnnpack-arm64-dotprod fixtures/aarch64_litert-2.3.0_neoverse-n1"; do
        read -r flavour xnn dirs <<<"$set"
        # shellcheck disable=SC2086 # dirs is a list of directories
        summary=$("$@" check --flavour "$flavour" --xnnpack-flavour "$xnn" $dirs | tail -n 1)
        printf '%-16s %-22s %s\n' "$label" "$flavour:" "$summary"
        case "$summary" in
        *" 0 failed") ;;
        *)
            echo "$label: fixtures failed ($flavour)" >&2
            return 1
            ;;
        esac
    done
}
