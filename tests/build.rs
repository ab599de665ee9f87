//! Builds every guest component (the Rust SDK's example plugins and the misbehaving test
//! guests) from source, so the integration tests always run the components of this
//! checkout. `src/components.rs` exposes their paths.
//!
//! The guests form their own cargo workspace (`plugins/Cargo.toml`) and build for
//! `wasm32-wasip2` into `target/guests`, a target directory of their own: the nested cargo
//! never waits on the lock of the build that runs this script.

#[path = "build_foreign.rs"]
mod foreign;

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The compilation target of every guest.
const GUEST_TARGET: &str = "wasm32-wasip2";

/// Environment variables cargo sets for a build script (or that configure the outer build)
/// which must not leak into the nested guest build: they would point it at the host's
/// target directory or target, add host-only flags, or run clippy over the guests.
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

/// Prefixes of per-package variables cargo sets for this build script.
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
        .parent()
        .expect("tests/ sits in the repository root")
        .canonicalize()
        .expect("the repository root exists");
    let guest_manifest = root.join("plugins/Cargo.toml");
    let target_dir = root.join("target/guests");

    watch_sources(&root);
    check_target_installed();

    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .arg("build")
        .arg("--release")
        .arg("--workspace")
        .arg("--target")
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
        .unwrap_or_else(|error| panic!("cannot run cargo to build the guest components: {error}"));
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
            "building the guest components failed ({}):\n\n{stderr}{hint}\n\nTo reproduce: \
             cargo build --release --workspace --target {GUEST_TARGET} --manifest-path {} \
             --target-dir {}",
            output.status,
            guest_manifest.display(),
            target_dir.display(),
        );
    }

    let components = target_dir.join(GUEST_TARGET).join("release");
    println!(
        "cargo:rustc-env=COURIER_GUEST_COMPONENTS_DIR={}",
        components.display()
    );

    // The plugins and test guests written in Python, JavaScript and C.
    let foreign = foreign::build(&root);
    println!(
        "cargo:rustc-env=COURIER_FOREIGN_COMPONENTS_DIR={}",
        foreign.display()
    );
}

/// Rebuilds the guests when their sources, the SDK or the WIT contract change. Only the
/// Rust guest crates are watched: `./plugins/build` writes `plugins/NAME.wasm`, and
/// plugins in other languages live beside the Rust ones, neither of which concerns this
/// build.
fn watch_sources(root: &Path) {
    let watched = [
        "plugins/Cargo.toml",
        "plugins/Cargo.lock",
        "sdk/rust",
        "sdk/rust-macros",
        "tests/guests",
        "wit",
    ];
    for path in watched {
        println!("cargo:rerun-if-changed={}", root.join(path).display());
    }
    let plugins = root.join("plugins");
    let entries = std::fs::read_dir(&plugins)
        .unwrap_or_else(|error| panic!("cannot list {}: {error}", plugins.display()));
    for entry in entries.flatten() {
        let path = entry.path();
        if path.join("Cargo.toml").is_file() {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
}

/// Fails early, with the command that fixes it, when the guest target's standard library
/// is not installed. `rust-toolchain.toml` lists the target, so rustup normally installs
/// it with the toolchain.
fn check_target_installed() {
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let output = Command::new(rustc)
        .args(["--print", "target-libdir", "--target", GUEST_TARGET])
        .output();
    let installed = match output {
        Ok(output) if output.status.success() => {
            let libdir = String::from_utf8_lossy(&output.stdout);
            Path::new(libdir.trim()).is_dir()
        }
        _ => false,
    };
    if !installed {
        panic!(
            "the Rust target {GUEST_TARGET} is not installed, so the guest components cannot \
             be built: run `rustup target add {GUEST_TARGET}`"
        );
    }
}
