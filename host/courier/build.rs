//! Builds the `noop` example plugin (`plugins/noop`) from source, so that `courier bench` has
//! a plugin to run with no extra step: `src/bench/noop.rs` embeds the component.
//!
//! The plugin belongs to the guest workspace (`plugins/Cargo.toml`) and builds for
//! `wasm32-wasip2` into `target/guests`, a target directory of its own (the same command and
//! directory as the integration tests' build script), so the nested cargo never waits on the
//! lock of the build that runs this script.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The compilation target of every guest.
const GUEST_TARGET: &str = "wasm32-wasip2";

/// Variables of the outer build that must not reach the nested guest build: they would point
/// it at the host's target directory or target, add host-only flags, or run clippy on it.
const LEAKING_VARIABLES: &[&str] = &[
    "RUSTFLAGS",
    "RUSTDOCFLAGS",
    "CARGO_ENCODED_RUSTFLAGS",
    "CARGO_ENCODED_RUSTDOCFLAGS",
    "CARGO_BUILD_RUSTFLAGS",
    "CARGO_TARGET_DIR",
    "CARGO_BUILD_TARGET",
    "CARGO_BUILD_TARGET_DIR",
    "RUSTC_WRAPPER",
    "RUSTC_WORKSPACE_WRAPPER",
    "CARGO_BUILD_RUSTC_WRAPPER",
    "CARGO_BUILD_RUSTC_WORKSPACE_WRAPPER",
    "CLIPPY_ARGS",
    "CLIPPY_CONF_DIR",
    "CARGO_PRIMARY_PACKAGE",
    "CARGO_CRATE_NAME",
    "TARGET",
    "HOST",
    "OUT_DIR",
    "PROFILE",
    "OPT_LEVEL",
    "DEBUG",
    "NUM_JOBS",
    "RUSTC_LINKER",
];

/// Prefixes of the per-package variables cargo sets for a build script.
const LEAKING_PREFIXES: &[&str] = &[
    "CARGO_CFG_",
    "CARGO_FEATURE_",
    "CARGO_PKG_",
    "CARGO_MANIFEST_",
    "CARGO_PROFILE_",
    "DEP_",
];

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let root = manifest_dir
        .join("../..")
        .canonicalize()
        .expect("host/courier sits two levels below the repository root");
    let guest_manifest = root.join("plugins/Cargo.toml");
    let target_dir = root.join("target/guests");

    for watched in [
        "plugins/Cargo.toml",
        "plugins/Cargo.lock",
        "plugins/noop",
        "sdk/rust",
        "sdk/rust-macros",
        "wit",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }

    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .args(["build", "--release", "--package", "noop", "--target"])
        .arg(GUEST_TARGET)
        .arg("--manifest-path")
        .arg(&guest_manifest)
        .arg("--target-dir")
        .arg(&target_dir)
        .current_dir(&root);
    for (name, _) in env::vars_os() {
        let Some(name) = name.to_str() else { continue };
        if LEAKING_VARIABLES.contains(&name)
            || LEAKING_PREFIXES
                .iter()
                .any(|prefix| name.starts_with(prefix))
        {
            command.env_remove(name);
        }
    }
    let output = command
        .output()
        .unwrap_or_else(|error| panic!("cannot run cargo to build the noop plugin: {error}"));
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let hint = if stderr.contains("target may not be installed")
            || stderr.contains("can't find crate for `std`")
            || stderr.contains("can't find crate for `core`")
        {
            format!(
                "\nThe {GUEST_TARGET} target is missing: run `rustup target add {GUEST_TARGET}`."
            )
        } else {
            String::new()
        };
        panic!(
            "building the noop plugin (for `courier bench`) failed ({}):\n\n{stderr}{hint}\n\n\
             To reproduce: cargo build --release --package noop --target {GUEST_TARGET} \
             --manifest-path {} --target-dir {}",
            output.status,
            guest_manifest.display(),
            target_dir.display(),
        );
    }
    let component = target_dir
        .join(GUEST_TARGET)
        .join("release")
        .join("noop.wasm");
    assert!(
        Path::new(&component).is_file(),
        "the noop plugin build succeeded but {} is missing",
        component.display()
    );
    println!(
        "cargo:rustc-env=COURIER_NOOP_COMPONENT={}",
        component.display()
    );
}
