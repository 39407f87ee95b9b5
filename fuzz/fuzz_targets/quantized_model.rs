//! Raw bytes as a quantized model file: `QuantizedModel::from_bytes`, then every layer built
//! and run on one row, and the model written back and loaded again (the same model).
#![no_main]

use hybridq::Linear;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(model) = hybridq::model::QuantizedModel::from_bytes(data) {
        let options = hybridq::LinearOptions::default().threads(1);
        let names: Vec<String> = model.layers().map(|l| l.name().to_string()).collect();
        for name in names {
            if let Ok(layer) = model.linear(&name, &options) {
                let k = layer.in_features();
                if k <= 1 << 16 {
                    let x = ndarray::Array2::<f32>::from_elem((1, k), 0.5);
                    let _ = layer.forward(x.view());
                }
            }
        }
        let bytes = model.to_bytes().expect("a loaded model saves");
        let again = hybridq::model::QuantizedModel::from_bytes(&bytes).expect("and loads");
        assert!(again == model);
    }
});
