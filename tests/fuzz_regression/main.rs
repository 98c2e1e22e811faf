//! Fuzzing regressions on stable Rust.
//!
//! `checks` is the code the cargo-fuzz targets run (`fuzz/fuzz_targets/`
//! include the same file), so every input replays through exactly the
//! checks it was fuzzed with:
//!
//! - every saved crash input, `cases/TARGET-<sha1>.bin` (what
//!   `fuzz/run.sh` copies from libFuzzer's artifacts), through TARGET;
//! - every seed under `fuzz/seeds/` through each target that uses it,
//!   and a few seeds checked to reach what they are there for (a reply,
//!   a forwarded packet), so the fuzzers start deep;
//! - the seeds are the ones `seeds` builds (`SLUICE_WRITE_FUZZ_SEEDS=1`
//!   rewrites them).
//!
//! `api_checks` is the `api_bodies` target's (it links the control
//! plane, which the other targets do not need).

mod api_checks;
mod checks;
mod seeds;

use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};

fn cases_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz_regression/cases")
}

fn seeds_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds")
}

/// The files of `dir`, sorted; none if it does not exist.
fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<PathBuf> = rd
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    v.sort();
    v
}

fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Runs `target` on `data`; the panic message if it panics.
fn try_run(target: &str, data: &[u8]) -> Result<(), String> {
    panic::catch_unwind(AssertUnwindSafe(|| {
        if target == "api_bodies" {
            api_checks::api_bodies(data);
        } else {
            assert!(checks::run(target, data), "unknown target {target}");
        }
    }))
    .map_err(|e| {
        e.downcast_ref::<String>()
            .cloned()
            .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "non-string panic".into())
    })
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn replays_saved_crash_inputs() {
    let mut failed = Vec::new();
    let mut n = 0;
    for p in files(&cases_dir()) {
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if name.starts_with('.') || name.ends_with(".md") {
            continue;
        }
        let target = name
            .strip_suffix(".bin")
            .and_then(|s| s.rsplit_once('-'))
            .map(|(t, _)| t)
            .unwrap_or_else(|| panic!("{name}: not TARGET-<sha1>.bin"));
        assert!(
            checks::TARGETS.contains(&target) || target == "api_bodies",
            "{name}: unknown target {target}"
        );
        let data = read(&p);
        n += 1;
        if let Err(msg) = try_run(target, &data) {
            failed.push(format!("{name} ({}): {msg}", hex(&data)));
        }
    }
    println!(
        "replayed {n} fuzz regression case(s) from {}",
        cases_dir().display()
    );
    assert!(failed.is_empty(), "failing cases:\n{}", failed.join("\n"));
}

#[test]
fn seeds_pass_every_check() {
    let mut total = 0;
    for target in checks::TARGETS {
        let dirs = checks::seed_dirs(target);
        assert!(!dirs.is_empty(), "{target} has no seed folder");
        let mut n = 0;
        for d in dirs {
            for p in files(&seeds_dir().join(d)) {
                let data = read(&p);
                if let Err(msg) = try_run(target, &data) {
                    panic!("{target} on seed {}: {msg}", p.display());
                }
                n += 1;
            }
        }
        assert!(n > 0, "{target}: no seed files in {dirs:?}");
        println!("{target}: {n} seed(s) checked");
        total += n;
    }
    println!("{total} seed runs over {} targets", checks::TARGETS.len());
}

/// Every API seed is accepted (so the fuzzer starts from bodies that get
/// past parsing and validation), and the state is the same after each.
#[test]
fn api_seeds_are_accepted() {
    let files = files(&seeds_dir().join("api"));
    assert_eq!(
        files.len(),
        api_checks::REQUESTS.len(),
        "one seed per request"
    );
    for p in files {
        let r = try_run("api_bodies", &read(&p));
        assert_eq!(r, Ok(()), "{}", p.display());
        let outcome = api_checks::api_bodies(&read(&p));
        assert_eq!(outcome, "ok", "{}", p.display());
    }
    // A refusal: a duplicate port, a bad field, an unknown rule.
    let mut dup = vec![0u8];
    dup.extend(
        serde_json::to_vec(&serde_json::json!({
            "config": serde_json::to_value(checks::vpc_config()).unwrap(),
            "guest": { "kind": "none" }
        }))
        .unwrap(),
    );
    assert_eq!(api_checks::api_bodies(&dup), "409");
    let rl = api_checks::REQUESTS
        .iter()
        .position(|r| *r == "set_rate_limit")
        .unwrap() as u8;
    let mut bad = vec![rl];
    bad.extend(br#"{"rate_limit":{"packets_per_sec":5,"burst_packets":0}}"#);
    assert_eq!(api_checks::api_bodies(&bad), "400");
    let rm = api_checks::REQUESTS
        .iter()
        .position(|r| *r == "rm_fw_rule")
        .unwrap() as u8;
    assert_eq!(api_checks::api_bodies(&[rm, b'9', b'9']), "404");
    assert_eq!(api_checks::api_bodies(&[rm, b'x']), "unparsed");
}

fn seed(dir: &str, name: &str) -> Vec<u8> {
    read(&seeds_dir().join(dir).join(name))
}

#[test]
fn seeds_reach_what_they_are_for() {
    let f = |name| seed("frames", name);
    let g = |name| seed("geneve", name);
    assert!(checks::parse_plain(&f("tcp4_syn_vm2.bin")).is_some());
    assert!(checks::parse_geneve(&g("tcp4_from_vm2.bin")).is_some());
    assert!(checks::parse_geneve(&g("tcp6_from_internet.bin")).is_some());
    for name in [
        "arp_request.bin",
        "dhcp4_discover.bin",
        "dhcp6_solicit.bin",
        "ndp_rs.bin",
        "icmp4_echo_gw.bin",
    ] {
        assert_eq!(checks::gateway(&f(name)), 1, "{name}: one gateway reply");
        assert_eq!(checks::vpc_port_out(&f(name)), "hairpin", "{name}");
    }
    for name in [
        "tcp4_syn_vm2.bin",
        "tcp4_syn_internet.bin",
        "udp6_internet.bin",
    ] {
        assert_eq!(checks::vpc_port_out(&f(name)), "forward", "{name}");
    }
    assert_eq!(
        checks::vpc_port_in(&f("tcp4_syn_from_vm2.bin")),
        ["malformed.not_geneve", "forward"]
    );
    assert_eq!(checks::vpc_port_in(&g("tcp4_from_vm2.bin"))[0], "forward");
    // Through the switch: vm2's SYN in a well-formed tunnel reaches vm1;
    // bare, as a control packet, or with a zero checksum it does not.
    assert_eq!(checks::switch_uplink(&f("tcp4_syn_from_vm2.bin")), 1);
    // The Geneve seeds carry no outer checksum (0): the switch refuses
    // them as they are (RFC 6936), and wrapped again they are tunnels in
    // tunnels, which vm1's port drops.
    assert_eq!(checks::switch_uplink(&g("tcp4_from_vm2.bin")), 0);
    assert_eq!(
        checks::vpc_port_in(&g("tcp6_from_internet.bin"))[0],
        "forward"
    );
    let [v4, _] = checks::quoted(&seed("icmp", "unreach4.bin"));
    assert!(v4.is_some_and(|q| (q.src_port, q.dst_port) == (5353, 53)));
    let [_, v6] = checks::quoted(&seed("icmp", "too_big6.bin"));
    assert!(v6.is_some_and(|q| (q.src_port, q.dst_port) == (40000, 443)));
    assert_eq!(
        checks::geneve_options_check(&seed("options", "mixed.bin")),
        Ok(overlay::OptionSummary { external: true })
    );
    assert!(checks::vnic_config(&seed("config", "vm1.json")));
}

#[test]
fn the_checks_catch_a_broken_contract() {
    let frame = seed("frames", "tcp4_syn_vm2.bin");
    let mut p = checks::parse_plain(&frame).expect("parses");
    p.off.inner_end = frame.len() as u16 + 1;
    let r = panic::catch_unwind(|| checks::check_offsets(&frame, &p));
    assert!(r.is_err(), "an offset past the frame went unnoticed");
}

#[test]
fn seeds_are_current() {
    let write = std::env::var_os("SLUICE_WRITE_FUZZ_SEEDS").is_some();
    let mut stale = Vec::new();
    let api = api_checks::seeds()
        .into_iter()
        .map(|(name, b)| ("api", &*String::leak(name), b));
    for (dir, name, bytes) in seeds::all().into_iter().chain(api) {
        let p = seeds_dir().join(dir).join(name);
        if write {
            std::fs::create_dir_all(p.parent().expect("folder")).expect("seed folder");
            std::fs::write(&p, &bytes).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        } else if std::fs::read(&p).ok().as_deref() != Some(&bytes[..]) {
            stale.push(format!("{dir}/{name}"));
        }
    }
    assert!(
        stale.is_empty(),
        "seeds differ from what tests/fuzz_regression/seeds.rs builds: {stale:?}; \
         rerun with SLUICE_WRITE_FUZZ_SEEDS=1 to rewrite them"
    );
}
