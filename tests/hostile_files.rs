//! Hostile inputs to `hybridq check` and the case reader (issue 8): archives larger than the
//! limit, keys checked before any data is read, symbolic-link loops, FIFOs, paths deeper than
//! PATH_MAX. Each is a failed case with a reason, found in bounded time and memory.
#![cfg(feature = "cli")]

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hybridq::fixture::{find_cases, load, load_with};
use hybridq::npz::ReadLimits;
use hybridq::Error;

const GOOD: &str = "fixtures/hybrid/case008_K33_N63_B6_asym_act0_pc_wnormal_xnormal.npz";

fn good_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(GOOD)
}

fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("hybridq-hostile-{}-{name}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// A zip with the given `(name, bytes)` entries, deflated.
fn write_zip(path: &Path, entries: &[(&str, &[u8])]) {
    let mut zip = zip::ZipWriter::new(fs::File::create(path).unwrap());
    let deflated = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .large_file(true);
    for (name, bytes) in entries {
        zip.start_file(*name, deflated).unwrap();
        zip.write_all(bytes).unwrap();
    }
    zip.finish().unwrap();
}

/// Runs `hybridq check` with a deadline; the walk must end well within it.
fn check_cli(args: &[&std::ffi::OsStr]) -> (String, Duration) {
    let start = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_hybridq"))
        .arg("check")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Duration::from_secs(120);
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if start.elapsed() > deadline {
            child.kill().unwrap();
            panic!("hybridq check ran for more than {deadline:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    (String::from_utf8(out.stdout).unwrap(), start.elapsed())
}

#[test]
fn an_archive_above_the_limit_is_refused_from_its_directory() {
    let dir = scratch_dir("limit");
    // 4 MiB of zeros deflate to a few KiB: the declared size, not the file size, is what counts.
    let p = dir.join("big.npz");
    write_zip(&p, &[("input.npy", &vec![0u8; 4 << 20])]);
    assert!(fs::metadata(&p).unwrap().len() < 64 << 10);
    let err = load_with(&p, ReadLimits::with_total(1 << 20)).unwrap_err();
    assert!(matches!(err, Error::File { .. }));
    assert!(err.to_string().contains("limit"), "{err}");
    let (out, _) = check_cli(&["--max-case-mib".as_ref(), "1".as_ref(), p.as_os_str()]);
    assert!(out.contains("FAIL big") && out.contains("limit"), "{out}");
    assert!(out.ends_with("0 passed, 1 failed\n"), "{out}");
    // The shipped case fits the default limit and a 1 MiB one.
    assert!(load_with(&good_path(), ReadLimits::with_total(1 << 20)).is_ok());
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn keys_are_checked_before_any_data_is_read() {
    let dir = scratch_dir("keys");
    // `input` is a deflate stream cut in the middle: reading it would fail as corrupt. The case
    // lacks `weights`, and that must be what the error says: no entry was decompressed.
    let mut corrupt = Vec::new();
    {
        let p = dir.join("whole.npz");
        write_zip(&p, &[("input.npy", &vec![7u8; 1 << 20])]);
        let mut zip = zip::ZipArchive::new(fs::File::open(&p).unwrap()).unwrap();
        let raw = zip.by_index_raw(0).unwrap();
        assert_eq!(raw.compression(), zip::CompressionMethod::Deflated);
        corrupt.extend_from_slice(&fs::read(&p).unwrap());
    }
    // Damage the compressed data (after the local header), keep the directory intact.
    for b in &mut corrupt[64..200] {
        *b ^= 0x5a;
    }
    let p = dir.join("lacks_weights.npz");
    fs::write(&p, &corrupt).unwrap();
    let err = load(&p).unwrap_err().to_string();
    assert!(err.contains("`weights`: missing"), "{err}");
    // Three entries with unknown keys: refused by name.
    let p = dir.join("unknown_keys.npz");
    write_zip(
        &p,
        &[
            ("junk1.npy", b"x"),
            ("junk2.npy", b"y"),
            ("junk3.npy", b"z"),
        ],
    );
    let err = load(&p).unwrap_err().to_string();
    assert!(err.contains("unexpected key `junk1`"), "{err}");
    fs::remove_dir_all(&dir).unwrap();
}

#[cfg(unix)]
#[test]
fn the_walk_ends_and_reports_links_fifos_and_deep_paths() {
    use std::os::unix::fs::symlink;
    let dir = scratch_dir("walk");
    let tree = dir.join("tree");
    fs::create_dir_all(tree.join("sub")).unwrap();
    fs::copy(good_path(), tree.join("good.npz")).unwrap();
    // A second name for the same file (hard link) and a link to it: checked once.
    fs::hard_link(tree.join("good.npz"), tree.join("sub/same.npz")).unwrap();
    symlink(tree.join("good.npz"), tree.join("sub/link.npz")).unwrap();
    // Two links to `.` and one to the parent: the walk would run forever following them.
    symlink(".", tree.join("self")).unwrap();
    symlink(".", tree.join("sub/again")).unwrap();
    symlink("..", tree.join("sub/up")).unwrap();
    // A broken link to a case and one to nothing in particular.
    symlink(tree.join("missing.npz"), tree.join("dangling.npz")).unwrap();
    symlink(tree.join("missing"), tree.join("dangling_other")).unwrap();
    // A FIFO named like a case: opening it would block forever.
    let status = Command::new("mkfifo")
        .arg(tree.join("p.npz"))
        .status()
        .unwrap();
    assert!(status.success());
    // A junk case deeper than PATH_MAX (4096 bytes), made by a shell that descends with `cd`.
    let name = "d".repeat(200);
    let script = format!(
        "cd '{}' && for i in $(seq 1 24); do mkdir {name} && cd -P {name} || exit 1; done && \
         echo junk > junk.npz",
        tree.display()
    );
    assert!(Command::new("sh")
        .arg("-c")
        .arg(&script)
        .status()
        .unwrap()
        .success());

    let found = find_cases(std::slice::from_ref(&tree));
    let ok: Vec<_> = found.iter().filter(|f| f.problem.is_none()).collect();
    assert_eq!(ok.len(), 1, "{found:#?}");
    let problems: Vec<String> = found
        .iter()
        .filter_map(|f| f.problem.as_ref().map(|e| e.to_string()))
        .collect();
    assert!(
        problems
            .iter()
            .any(|p| p.contains("p.npz") && p.contains("FIFO")),
        "{problems:#?}"
    );
    assert!(
        problems.iter().any(|p| p.contains("dangling.npz")),
        "{problems:#?}"
    );
    assert!(
        problems.iter().any(|p| p.contains("too long")),
        "{problems:#?}"
    );
    assert!(
        !problems.iter().any(|p| p.contains("dangling_other")),
        "{problems:#?}"
    );

    let (out, _) = check_cli(&[tree.as_os_str()]);
    let last = out.lines().last().unwrap();
    assert_eq!(
        last,
        format!("1 passed, {} failed", problems.len()),
        "{out}"
    );
    // Named directly, a FIFO is refused from its type, not opened.
    let (out, _) = check_cli(&[tree.join("p.npz").as_os_str()]);
    assert!(out.contains("not a regular file (a FIFO)"), "{out}");
    let _ = Command::new("rm").arg("-rf").arg(&dir).status();
}
