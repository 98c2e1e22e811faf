//! Finds the system's DPDK with pkg-config (`libdpdk`, >= 22.11), generates
//! bindings with bindgen and compiles the C shim with cc.
//!
//! Without DPDK the crate is built empty (with a cargo warning), so
//! workspace-wide commands work on machines without it; with the
//! `require` feature (what `vmm-net/dpdk` turns on) that is an error.

use std::env;
use std::path::PathBuf;
use std::process::Command;

/// The oldest DPDK whose API this crate is written against (Debian 12's).
const MIN_VERSION: &str = "22.11";

fn main() {
    println!("cargo::rustc-check-cfg=cfg(sluice_dpdk)");
    println!("cargo::rerun-if-changed=src/wrapper.h");
    println!("cargo::rerun-if-changed=src/shim.h");
    println!("cargo::rerun-if-changed=src/shim.c");
    println!("cargo::rerun-if-env-changed=PKG_CONFIG_PATH");
    println!("cargo::rerun-if-env-changed=PKG_CONFIG_LIBDIR");
    println!("cargo::rerun-if-env-changed=DPDK_SYS_DISABLE");

    let required = env::var_os("CARGO_FEATURE_REQUIRE").is_some();
    let missing = |what: String| {
        if required {
            // A plain message, not a panic's backtrace: this is the
            // machine's setup, not a bug.
            eprintln!(
                "error: the `dpdk` feature needs {what}.\n\
                 Install it with scripts/install-dpdk.sh (Debian: apt-get install libdpdk-dev libclang-dev)."
            );
            std::process::exit(1);
        }
        println!(
            "cargo::warning={what}; dpdk-sys is built empty. \
             Install it with scripts/install-dpdk.sh (Debian: libdpdk-dev, libclang-dev)."
        );
    };
    if env::var_os("DPDK_SYS_DISABLE").is_some() {
        return missing("DPDK (DPDK_SYS_DISABLE is set)".into());
    }
    // No link flags yet: they are printed last, once everything built,
    // and after the shim's, so that with --as-needed the DPDK libraries
    // come after the code that uses them.
    let lib = match pkg_config::Config::new()
        .atleast_version(MIN_VERSION)
        .cargo_metadata(false)
        .probe("libdpdk")
    {
        Ok(lib) => lib,
        Err(e) => {
            let e = e.to_string();
            let why = e.lines().map(str::trim).find(|l| !l.is_empty());
            return missing(format!(
                "DPDK >= {MIN_VERSION} (pkg-config libdpdk: {})",
                why.unwrap_or("not found")
            ));
        }
    };
    // bindgen panics without libclang; ask first.
    if let Err(e) = clang_sys::load() {
        return missing(format!("libclang, for bindgen ({e})"));
    }

    // pkg-config's cflags carry more than include paths: `-include
    // rte_config.h` and the -march DPDK was built for, which its inline
    // functions (vector RX/TX, rte_memcpy) need. Pass them all on.
    let cflags = pkg_config_output(&["--cflags", "libdpdk"]);
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    generate_bindings(&cflags, &out.join("bindings.rs"));

    let mut shim = cc::Build::new();
    shim.file("src/shim.c").include("src").warnings(true);
    for f in &cflags {
        shim.flag(f);
    }
    if let Err(e) = shim.try_compile("sluice_dpdk_shim") {
        return missing(format!("a C compiler for src/shim.c ({e})"));
    }

    println!("cargo::rustc-cfg=sluice_dpdk");
    println!("cargo::metadata=version={}", lib.version);

    // Link the DPDK libraries (shared on Debian). Drivers are not linked:
    // a shared DPDK's EAL loads every PMD from its plugin directory
    // (RTE_EAL_PMD_PATH, e.g. /usr/lib/x86_64-linux-gnu/dpdk/pmds-23.0)
    // at rte_eal_init, and `-d <path>` EAL arguments load more.
    for dir in &lib.link_paths {
        println!("cargo::rustc-link-search=native={}", dir.display());
    }
    for l in &lib.libs {
        println!("cargo::rustc-link-lib={l}");
    }
}

/// bindgen over src/wrapper.h, limited to what sluice uses.
fn generate_bindings(cflags: &[String], path: &std::path::Path) {
    let bindings = bindgen::Builder::default()
        .header("src/wrapper.h")
        .clang_args(cflags)
        .clang_arg("-Isrc")
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()))
        .allowlist_function("rte_eal_(init|cleanup)")
        .allowlist_function("rte_strerror")
        .allowlist_function("rte_socket_id")
        .allowlist_function("rte_lcore_count")
        .allowlist_function("rte_thread_(register|unregister)")
        .allowlist_function(
            "rte_eth_(dev_configure|rx_queue_setup|tx_queue_setup|dev_start|dev_stop|dev_close\
             |stats_get|stats_reset|macaddr_get|dev_count_avail|dev_get_port_by_name\
             |dev_get_name_by_port|dev_info_get|dev_socket_id|dev_adjust_nb_rx_tx_desc\
             |promiscuous_enable|promiscuous_disable|dev_set_mtu|dev_get_mtu\
             |link_get_nowait|dev_is_valid_port)",
        )
        .allowlist_function("rte_pktmbuf_pool_create")
        .allowlist_function("rte_mempool_(free|avail_count|in_use_count|lookup)")
        .allowlist_function("sluice_.*")
        .allowlist_type("rte_mbuf")
        .allowlist_type("rte_mempool")
        .allowlist_type("rte_eth_(conf|dev_info|stats|rxconf|txconf|link)")
        .allowlist_type("rte_ether_addr")
        .allowlist_type("rte_eth_rx_mq_mode")
        .allowlist_var("RTE_MAX_ETHPORTS")
        .allowlist_var("RTE_MBUF_DEFAULT_BUF_SIZE")
        .allowlist_var("RTE_MBUF_DEFAULT_DATAROOM")
        .allowlist_var("RTE_PKTMBUF_HEADROOM")
        .allowlist_var("RTE_MEMPOOL_CACHE_MAX_SIZE")
        .allowlist_var("RTE_ETHER_ADDR_LEN")
        .allowlist_var("SOCKET_ID_ANY")
        .allowlist_var("LCORE_ID_ANY")
        .allowlist_var("RTE_ETH_NAME_MAX_LEN")
        // Rust reaches mbuf fields only through the shim's accessors.
        // Default lets the config structs start zeroed, as C's `= {0}`;
        // the layout tests are compile-time asserts that each struct's
        // Rust layout is C's.
        .use_core()
        .derive_default(true)
        .layout_tests(true)
        .generate()
        .expect("bindgen could not generate DPDK bindings (is libclang installed? Debian: libclang-dev)");
    bindings.write_to_file(path).expect("write bindings.rs");
}

fn pkg_config_output(args: &[&str]) -> Vec<String> {
    let pc = env::var("PKG_CONFIG").unwrap_or_else(|_| "pkg-config".into());
    let out = Command::new(&pc)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {pc}: {e}"));
    assert!(out.status.success(), "{pc} {args:?} failed");
    String::from_utf8(out.stdout)
        .expect("pkg-config output is UTF-8")
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}
