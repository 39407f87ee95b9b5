//! The npz reader from raw bytes: every entry read as every element type and several ranks.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    hybridq_fuzz::read_every_array(data.to_vec());
});
