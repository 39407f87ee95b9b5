//! A bare `.npy` entry whose header is built field by field from the input (see
//! `structured_npy`): read on its own as every element type, and as the `input` of a case.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let npy = hybridq_fuzz::structured_npy(data);
    hybridq_fuzz::read_every_array(npy.clone());
    hybridq_fuzz::check_case_bytes(hybridq_fuzz::case_with_input(&npy));
});
