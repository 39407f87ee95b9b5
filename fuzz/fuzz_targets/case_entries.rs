//! A case built as a valid zip out of the fuzz input (see `entries_to_zip`), so that mutations
//! reach the `.npy` headers and the array data instead of breaking the container.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    hybridq_fuzz::check_case_bytes(hybridq_fuzz::entries_to_zip(data));
});
