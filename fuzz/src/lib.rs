//! What the fuzz targets share: the limits they read with, the two structured input formats
//! (a list of zip entries, an `.npy` header described field by field) and the readers they
//! drive. Every function here must return normally on any input: a panic is a finding.

use std::io::Write;
use std::path::Path;

use hybridq::fixture::load_bytes;
use hybridq::npz::{NpzArchive, ReadLimits};
use ndarray::{Ix0, Ix1, Ix2, IxDyn};

/// What a fuzz input may make the readers hold: small enough that an input checks in
/// milliseconds, large enough for every shipped fixture.
pub fn limits() -> ReadLimits {
    ReadLimits::with_total(8 << 20)
}

/// Loads a case from bytes and, if it loads, checks it bit for bit (the result is ignored:
/// only a panic, a hang or an out-of-memory is a finding).
pub fn check_case_bytes(bytes: Vec<u8>) {
    if let Ok(case) = load_bytes(Path::new("fuzz.npz"), bytes, limits()) {
        let _ = hybridq::check::check_case(&case);
    }
}

/// Reads every entry of an archive as every element type and a few ranks.
pub fn read_every_array(bytes: Vec<u8>) {
    let Ok(a) = NpzArchive::from_bytes(Path::new("fuzz.npz"), bytes, limits()) else {
        return;
    };
    let keys: Vec<String> = a.keys().map(str::to_string).collect();
    for key in &keys {
        let _ = a.array::<f32, IxDyn>(key);
        let _ = a.array::<i8, IxDyn>(key);
        let _ = a.array::<i32, IxDyn>(key);
        let _ = a.array::<f64, IxDyn>(key);
        let _ = a.array::<i16, Ix2>(key);
        let _ = a.array::<u8, Ix1>(key);
        let _ = a.array::<i64, Ix0>(key);
    }
}

/// The keys a case holds, so that mutated inputs keep reaching the array readers.
pub const KNOWN_KEYS: [&str; 18] = [
    "input",
    "weights",
    "weights_q",
    "weight_scales",
    "bias",
    "asymmetric_inputs",
    "activation",
    "keep_num_dims",
    "expected",
    "expected_xnnpack",
    "expected_float",
    "input_q",
    "input_scale",
    "input_zero_point",
    "bias_q",
    "output_scale",
    "output_zero_point",
    "expected_q",
];

/// Builds a valid zip archive out of a list of entries:
/// `[flags] ([name] [len: u24 LE] [bytes])*`, where `flags & 1` deflates the entries and a
/// name is either `0x80 | i` (known key `i`, `.npy` appended) or a length byte and that many
/// raw bytes. Parsing stops where the input ends.
pub fn entries_to_zip(data: &[u8]) -> Vec<u8> {
    let mut r = Reader(data);
    let flags = r.byte().unwrap_or(0);
    let method = if flags & 1 == 1 {
        zip::CompressionMethod::Deflated
    } else {
        zip::CompressionMethod::Stored
    };
    let options = zip::write::SimpleFileOptions::default().compression_method(method);
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    while let Some(tag) = r.byte() {
        let name = if tag & 0x80 != 0 {
            format!(
                "{}.npy",
                KNOWN_KEYS[(tag & 0x7f) as usize % KNOWN_KEYS.len()]
            )
        } else {
            String::from_utf8_lossy(r.take(tag as usize)).into_owned()
        };
        let len = r.take(3);
        let len = len
            .iter()
            .rev()
            .fold(0usize, |acc, &b| acc << 8 | b as usize);
        let body = r.take(len);
        // A name the writer refuses (a duplicate, say) ends the archive there.
        if zip.start_file(name, options).is_err() || zip.write_all(body).is_err() {
            break;
        }
    }
    zip.finish().map(|c| c.into_inner()).unwrap_or_default()
}

/// Element type descriptors an `.npy` header may name (supported ones and others).
pub const DESCRS: [&str; 14] = [
    "<f4", "<i1", "|i1", "<i4", "<f8", "<i2", "<u1", "|u1", "<i8", ">f4", "|b1", "<c8", "<f2",
    "<U3",
];

/// Axis lengths worth trying: zero, small, around 2^31, 2^32 and 2^63, and the largest.
pub const DIMS: [u64; 12] = [
    0,
    1,
    3,
    65_535,
    1 << 31,
    (1 << 32) - 1,
    1 << 32,
    (1 << 32) + 1,
    1 << 62,
    (1 << 63) - 1,
    1 << 63,
    u64::MAX,
];

/// Builds an `.npy` file out of a header described field by field:
/// `[descr] [fortran] [version] [rank] ([dim])* [data...]`, where a dim byte below 0x80 is the
/// length itself, `0x80 | i` is `DIMS[i]`, and `0xff` takes a raw u64 from the next 8 bytes.
/// Zero-length axes beside huge ones are reached in a few mutations.
pub fn structured_npy(data: &[u8]) -> Vec<u8> {
    let mut r = Reader(data);
    let descr = DESCRS[r.byte().unwrap_or(0) as usize % DESCRS.len()];
    let fortran = if r.byte().unwrap_or(0) & 1 == 1 {
        "True"
    } else {
        "False"
    };
    let version = 1 + r.byte().unwrap_or(0) % 3;
    let rank = r.byte().unwrap_or(0) % 7;
    let mut shape = String::new();
    for _ in 0..rank {
        let d = match r.byte().unwrap_or(0) {
            0xff => r
                .take(8)
                .iter()
                .rev()
                .fold(0u64, |acc, &b| acc << 8 | b as u64),
            b if b & 0x80 != 0 => DIMS[(b & 0x7f) as usize % DIMS.len()],
            b => b as u64,
        };
        shape.push_str(&format!("{d}, "));
    }
    let dict = format!("{{'descr': '{descr}', 'fortran_order': {fortran}, 'shape': ({shape}), }}");
    let len_bytes = if version == 1 { 2 } else { 4 };
    let unpadded = 6 + 2 + len_bytes + dict.len() + 1;
    let pad = (64 - unpadded % 64) % 64;
    let header_len = dict.len() + pad + 1;
    let mut out = b"\x93NUMPY".to_vec();
    out.extend_from_slice(&[version, 0]);
    if version == 1 {
        out.extend_from_slice(&(header_len as u16).to_le_bytes());
    } else {
        out.extend_from_slice(&(header_len as u32).to_le_bytes());
    }
    out.extend_from_slice(dict.as_bytes());
    out.extend(std::iter::repeat_n(b' ', pad));
    out.push(b'\n');
    out.extend_from_slice(r.0);
    out
}

/// A cursor over the fuzz input that yields less (never panics) where the input ends.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }

    fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        head
    }
}

/// A shipped case whose other arrays go with any `input`.
const BASE_CASE: &[u8] =
    include_bytes!("../../fixtures/hybrid/case008_K33_N63_B6_asym_act0_pc_wnormal_xnormal.npz");

/// The shipped case `BASE_CASE` with its `input.npy` entry replaced by `npy` (stored).
pub fn case_with_input(npy: &[u8]) -> Vec<u8> {
    let mut base = zip::ZipArchive::new(std::io::Cursor::new(BASE_CASE)).expect("a shipped case");
    let stored =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for i in 0..base.len() {
        let mut entry = base.by_index(i).expect("a shipped case");
        let name = entry.name().to_string();
        zip.start_file(name.as_str(), stored).expect("a new entry");
        if name == "input.npy" {
            zip.write_all(npy).expect("in memory");
        } else {
            std::io::copy(&mut entry, &mut zip).expect("in memory");
        }
    }
    zip.finish().expect("in memory").into_inner()
}
