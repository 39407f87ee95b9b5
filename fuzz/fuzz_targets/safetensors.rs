//! Raw bytes as a safetensors file of float weights: `TensorSet::from_bytes`, then every tensor
//! read back as a matrix and as a view.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(set) = hybridq::model::TensorSet::from_bytes(data) {
        let names: Vec<String> = set.names().map(str::to_string).collect();
        for name in names {
            let _ = set.matrix(&name);
            if let Ok(t) = set.get(&name) {
                assert_eq!(t.view().len(), t.data.len());
            }
        }
    }
});
