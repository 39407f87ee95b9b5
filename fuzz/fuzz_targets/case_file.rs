//! A case file as `hybridq check` reads it, from raw bytes: the zip container, its directory,
//! the key checks, the `.npy` headers, the arrays, then the bit-exact check itself.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    hybridq_fuzz::check_case_bytes(data.to_vec());
});
