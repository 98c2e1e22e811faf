//! The files `sluiced` writes and trusts (issue 17 item 4): a token
//! file is refused when others can read it, it is a symbolic link, not
//! ours, or too short; the demo's token lives in a fresh private
//! directory, never behind a planted link; the state directory's
//! temporary file is never written through a link.

use crate::access::{free_port, start, tmpdir, write_config, SLUICED};
use std::os::unix::fs::{symlink, PermissionsExt};
use std::process::Command;

/// Starts sluiced on `dir` and expects it to refuse: its stderr.
fn refused(dir: &std::path::Path) -> String {
    let cfg = write_config(dir, &format!("127.0.0.1:{}", free_port()), "");
    let out = Command::new(SLUICED)
        .arg("--config")
        .arg(cfg)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success(), "sluiced started: {err}");
    err
}

const GOOD: &str = "0123456789abcdef0123456789abcdef01234567";

#[test]
fn a_token_file_others_can_read_is_refused() {
    let dir = tmpdir("tok-mode");
    std::fs::create_dir_all(dir.join("state")).unwrap();
    let t = dir.join("state/token");
    std::fs::write(&t, GOOD).unwrap();
    std::fs::set_permissions(&t, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = refused(&dir);
    assert!(
        err.contains("token file") && err.contains("mode 644"),
        "{err}"
    );
    std::fs::set_permissions(&t, std::fs::Permissions::from_mode(0o640)).unwrap();
    assert!(refused(&dir).contains("mode 640"));
    // Made private, the same token is used.
    std::fs::set_permissions(&t, std::fs::Permissions::from_mode(0o600)).unwrap();
    let d = start(&dir, "");
    assert_eq!(d.client.token.as_deref(), Some(GOOD));
}

#[test]
fn a_short_token_is_refused() {
    let dir = tmpdir("tok-short");
    std::fs::create_dir_all(dir.join("state")).unwrap();
    let t = dir.join("state/token");
    std::fs::write(&t, "secret\n").unwrap();
    std::fs::set_permissions(&t, std::fs::Permissions::from_mode(0o600)).unwrap();
    let err = refused(&dir);
    assert!(
        err.contains("6 characters") && err.contains("at least 32"),
        "{err}"
    );
}

#[test]
fn a_token_file_that_is_a_link_is_refused_and_not_written_through() {
    let dir = tmpdir("tok-link");
    std::fs::create_dir_all(dir.join("state")).unwrap();
    // A dangling link: the old code created the target, root-owned.
    let victim = dir.join("victim");
    symlink(&victim, dir.join("state/token")).unwrap();
    let err = refused(&dir);
    assert!(err.contains("symbolic link"), "{err}");
    assert!(!victim.exists(), "sluiced wrote through the link");
    // A link to an existing, private file with a good token: still refused.
    std::fs::write(&victim, GOOD).unwrap();
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(refused(&dir).contains("symbolic link"));
}

#[test]
fn the_demo_token_is_private_and_never_behind_a_planted_link() {
    let dir = tmpdir("demo-token");
    // What another user could plant at the old fixed path.
    let planted = dir.join("sluice-demo");
    std::fs::create_dir_all(&planted).unwrap();
    let victim = dir.join("victim");
    std::fs::write(&victim, "precious\n").unwrap();
    symlink(&victim, planted.join("token")).unwrap();
    let out = Command::new(SLUICED)
        .args(["--demo-exit", "--listen", "127.0.0.1:0"])
        .env("TMPDIR", &*dir)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
    // The token was in a directory of its own, named at random.
    let path = text
        .split_whitespace()
        .find(|w| w.ends_with("/token") && w.contains("sluice-demo-"))
        .unwrap_or_else(|| panic!("no token path in {text}"));
    assert!(path.starts_with(dir.to_str().unwrap()), "{path}");
    assert!(!std::path::Path::new(path).exists(), "removed at exit");
}

#[test]
fn the_state_files_are_never_written_through_a_planted_link() {
    let dir = tmpdir("state-tmp");
    let d = start(&dir, "");
    let victim = dir.join("victim");
    std::fs::write(&victim, "precious\n").unwrap();
    // A change goes to the journal; a link planted there is refused, not
    // followed, and the change is reported unsaved.
    let journal = dir.join("state/journal.jsonl");
    let _ = std::fs::remove_file(&journal);
    symlink(&victim, &journal).unwrap();
    let mut vm = crate::endpoints::vm("vm1", 5);
    vm["guest"] = serde_json::json!({ "kind": "none" });
    let r = d.client.call("POST", "/ports", Some(&vm));
    assert!(r.status >= 500, "{} {}", r.status, r.body);
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
    std::fs::remove_file(&journal).unwrap();
    // With the link gone the journal is made afresh, private.
    let mut vm = crate::endpoints::vm("vm2", 6);
    vm["guest"] = serde_json::json!({ "kind": "none" });
    d.client.ok("POST", "/ports", Some(vm));
    let text = std::fs::read_to_string(&journal).unwrap();
    assert!(text.contains("vm2"), "the change was saved: {text}");
    let mode = std::fs::metadata(&journal).unwrap().permissions().mode();
    assert_eq!(mode & 0o077, 0, "the journal is private");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
}
