//! A closed stdout (`rnafm-eval … | head -1`) ends the program quietly, as other Unix
//! tools do, instead of a "failed printing to stdout" panic.

#![cfg(unix)]

use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};

/// SIGPIPE's number on Linux, macOS and the BSDs.
const SIGPIPE: i32 = 13;

#[test]
fn closed_stdout_is_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("cohort");
    let mut child = Command::new(env!("CARGO_BIN_EXE_rnafm-eval"))
        .args([
            "synth",
            "--patients",
            "4",
            "--genes",
            "30",
            "--pathways",
            "3",
        ])
        .arg("--out")
        .arg(&out)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The reader goes away before the program prints its summary line.
    drop(child.stdout.take());
    let done = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&done.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        done.status.success() || done.status.signal() == Some(SIGPIPE),
        "{:?}: {stderr}",
        done.status
    );
    // The cohort itself was written before the summary line.
    assert!(out.join("reference.csv").is_file());
}
