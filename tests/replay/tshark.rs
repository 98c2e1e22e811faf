//! Dissecting output captures with tshark (Wireshark): a second,
//! independent reader of what the port wrote.
//!
//! Without tshark on `PATH`: in CI (`CI` set) the checks fail, saying to
//! install it; elsewhere they are skipped with one line on stderr, and the
//! etherparse checks still run.

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

/// The install command CI and developers use.
pub const INSTALL: &str = "DEBIAN_FRONTEND=noninteractive apt-get install -y tshark";

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// Whether tshark runs here. Fails (every caller) in CI when it does not.
pub fn available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        match Command::new("tshark").arg("--version").output() {
            Ok(o) if o.status.success() => true,
            Ok(o) => panic!(
                "tshark --version failed ({}): {}",
                o.status,
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if in_ci() {
                    panic!(
                        "tshark is not installed, and CI must dissect the replay outputs with it: \
                         install it first (`{INSTALL}`)"
                    );
                }
                // Straight to stderr, not through the test's captured output,
                // so the line shows in a normal `cargo test` run.
                let _ = writeln!(
                    std::io::stderr(),
                    "skipping tshark checks: tshark not installed (apt-get install tshark)"
                );
                false
            }
            Err(e) => panic!("running tshark: {e}"),
        }
    })
}

fn tshark(path: &Path, args: &[&str]) -> String {
    let out = Command::new("tshark")
        .arg("-r")
        .arg(path)
        // No name resolution (no DNS lookups, plain addresses), and every
        // checksum verified.
        .args(["-n", "-o", "ip.check_checksum:TRUE"])
        .args([
            "-o",
            "udp.check_checksum:TRUE",
            "-o",
            "tcp.check_checksum:TRUE",
        ])
        .args(args)
        .output()
        .expect("running tshark");
    assert!(
        out.status.success(),
        "tshark -r {} {args:?} failed ({}): {}",
        path.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("tshark prints UTF-8")
}

/// Hex numbers (`0x001e61`) as decimal, in every comma-separated value.
fn decimal(cell: &str) -> String {
    cell.split(',')
        .map(|v| match v.strip_prefix("0x") {
            Some(h) => u64::from_str_radix(h, 16).map_or(v.to_string(), |n| n.to_string()),
            None => v.to_string(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The fields of every packet of a capture, one row per packet, numbers
/// in decimal, repeated fields (outer and inner headers) comma-separated
/// outer first. Also checks tshark finds nothing malformed and no error
/// (bad checksums included) in any packet. `None` when tshark is skipped.
pub fn fields(path: &Path, fields: &[&str]) -> Option<Vec<Vec<String>>> {
    if !available() {
        return None;
    }
    let errors = tshark(
        path,
        &["-Y", "_ws.malformed || _ws.expert.severity >= \"Error\""],
    );
    assert!(
        errors.trim().is_empty(),
        "tshark finds errors in {}:\n{errors}{}",
        path.display(),
        tshark(
            path,
            &[
                "-V",
                "-Y",
                "_ws.malformed || _ws.expert.severity >= \"Error\""
            ]
        )
    );
    let mut args = vec!["-T", "fields", "-E", "separator=/t", "-E", "occurrence=a"];
    for f in fields {
        args.extend(["-e", f]);
    }
    let text = tshark(path, &args);
    Some(
        text.lines()
            .map(|l| l.split('\t').map(decimal).collect())
            .collect(),
    )
}

/// The fields of every packet as [`fields`] gives them, without its
/// check for errors: for an input made to carry one (a bad checksum).
pub fn fields_of_faulty(path: &Path, fields: &[&str]) -> Option<Vec<Vec<String>>> {
    if !available() {
        return None;
    }
    let mut args = vec!["-T", "fields", "-E", "separator=/t", "-E", "occurrence=a"];
    for f in fields {
        args.extend(["-e", f]);
    }
    let text = tshark(path, &args);
    Some(
        text.lines()
            .map(|l| l.split('\t').map(decimal).collect())
            .collect(),
    )
}

/// Checks tshark's view of a capture: one row per packet, each cell equal
/// to the expected one; an expectation ending in `*` matches cells that
/// start with the rest (protocol chains: what tshark makes of a payload,
/// e.g. `:http`, varies between Wireshark versions), one starting with
/// `*` cells that end with it (`*,2048`: any outer port, then 2048).
pub fn expect(path: &Path, names: &[&str], want: &[Vec<String>]) {
    let Some(got) = fields(path, names) else {
        return;
    };
    let show = |rows: &[Vec<String>]| {
        rows.iter()
            .enumerate()
            .map(|(i, r)| format!("  {}: {}\n", i + 1, r.join(" | ")))
            .collect::<String>()
    };
    let context = format!(
        "tshark's view of {} ({})\ngot:\n{}want:\n{}",
        path.display(),
        names.join(" | "),
        show(&got),
        show(want)
    );
    assert_eq!(got.len(), want.len(), "packet count; {context}");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(g.len(), names.len(), "packet {}: columns; {context}", i + 1);
        for ((cell, exp), name) in g.iter().zip(w).zip(names) {
            let ok = if let Some(prefix) = exp.strip_suffix('*') {
                cell.starts_with(prefix)
            } else if let Some(suffix) = exp.strip_prefix('*') {
                cell.ends_with(suffix)
            } else {
                cell == exp
            };
            assert!(
                ok,
                "packet {} field {name}: {cell:?} is not {exp:?}; {context}",
                i + 1
            );
        }
    }
}

/// A row of expected cells.
#[macro_export]
macro_rules! row {
    ($($cell:expr),* $(,)?) => {
        vec![$($cell.to_string()),*]
    };
}
