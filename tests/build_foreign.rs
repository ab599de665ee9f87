//! Builds the plugins and test guests written in Python, JavaScript and C, for `build.rs`.
//!
//! Each component is built by its language's script in `sdk/` (the same scripts that
//! `./plugins/build` and plugin authors use) into `target/guests/foreign/NAME.wasm`, next to
//! a stamp holding a hash of every input: the sources, the WIT contract, the build scripts and
//! the pinned toolchain versions. A component whose stamp matches is not rebuilt, so a rerun
//! of `build.rs` (whatever triggered it) costs a few file reads; componentize-py and
//! componentize-js take 10–60 s per component otherwise. The builds that are needed run in
//! parallel. A missing toolchain fails the build with the command that installs it.

use std::collections::hash_map::DefaultHasher;
use std::fs::{self, File};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The language of a foreign component, which picks its build script.
#[derive(Clone, Copy)]
enum Language {
    Python,
    JavaScript,
    C,
}

/// One component to build.
struct Foreign {
    /// The output file name, without `.wasm`.
    name: &'static str,
    language: Language,
    /// The source: the app directory (Python, C) or the module file (JavaScript), relative
    /// to the repository root.
    source: &'static str,
    /// A directory of extra WIT (a world of its own that includes the contract), relative to
    /// the repository root; `None` builds against `wit/` directly.
    extra_wit: Option<&'static str>,
    /// The world to build.
    world: &'static str,
}

const COMPONENTS: &[Foreign] = &[
    Foreign {
        name: "welcome_email_py",
        language: Language::Python,
        source: "plugins/welcome-email-py",
        extra_wit: None,
        world: "handler-plugin",
    },
    Foreign {
        name: "welcome_email_js",
        language: Language::JavaScript,
        source: "plugins/welcome-email-js/index.js",
        extra_wit: None,
        world: "handler-plugin",
    },
    Foreign {
        name: "welcome_email_c",
        language: Language::C,
        source: "plugins/welcome-email-c",
        extra_wit: None,
        world: "handler-plugin",
    },
    Foreign {
        name: "noop_py",
        language: Language::Python,
        source: "plugins/noop-py",
        extra_wit: None,
        world: "handler-plugin",
    },
    Foreign {
        name: "noop_js",
        language: Language::JavaScript,
        source: "plugins/noop-js/index.js",
        extra_wit: None,
        world: "handler-plugin",
    },
    Foreign {
        name: "sandbox_py",
        language: Language::Python,
        source: "tests/guests-py/sandbox",
        extra_wit: None,
        world: "handler-plugin",
    },
    Foreign {
        name: "promises_js",
        language: Language::JavaScript,
        source: "tests/guests-js/promises/index.js",
        extra_wit: None,
        world: "handler-plugin",
    },
    Foreign {
        name: "echo_destination_js",
        language: Language::JavaScript,
        source: "tests/guests-js/echo-destination/index.js",
        extra_wit: None,
        world: "destination-plugin",
    },
    Foreign {
        name: "sandbox_js",
        language: Language::JavaScript,
        source: "tests/guests-js/sandbox/index.js",
        extra_wit: Some("tests/guests-js/sandbox/wit"),
        world: "sandbox",
    },
];

/// Inputs shared by every component of a language (besides `wit/`), relative to the root.
fn toolchain_inputs(language: Language) -> &'static [&'static str] {
    match language {
        Language::Python => &["sdk/install-toolchains", "sdk/python/build"],
        Language::JavaScript => &["sdk/js/build.mjs", "sdk/js/package-lock.json"],
        Language::C => &[
            "sdk/install-toolchains",
            "sdk/c/build",
            "sdk/c/courier_json.c",
            "sdk/c/courier_json.h",
        ],
    }
}

/// Builds every foreign component that is out of date and returns the directory holding
/// them all.
pub fn build(root: &Path) -> PathBuf {
    let out_dir = root.join("target/guests/foreign");
    fs::create_dir_all(&out_dir)
        .unwrap_or_else(|error| panic!("cannot create {}: {error}", out_dir.display()));

    for path in [
        "wit",
        "sdk/python/build",
        "sdk/js/build.mjs",
        "sdk/js/package-lock.json",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(path).display());
    }
    for path in ["sdk/install-toolchains", "sdk/c"] {
        println!("cargo:rerun-if-changed={}", root.join(path).display());
    }

    // Two builds of this crate (say `cargo test` and `cargo clippy`) may run this script at
    // once: they take turns, and the second finds everything up to date.
    let lock_path = out_dir.join(".lock");
    let lock = File::create(&lock_path)
        .unwrap_or_else(|error| panic!("cannot create {}: {error}", lock_path.display()));
    lock.lock()
        .unwrap_or_else(|error| panic!("cannot lock {}: {error}", lock_path.display()));

    let mut running: Vec<(&Foreign, Child, PathBuf, String)> = Vec::new();
    for component in COMPONENTS {
        let source_dir = match component.language {
            Language::JavaScript => Path::new(component.source)
                .parent()
                .expect("a JavaScript source is a file in a directory"),
            Language::Python | Language::C => Path::new(component.source),
        };
        println!("cargo:rerun-if-changed={}", root.join(source_dir).display());

        let output = out_dir.join(format!("{}.wasm", component.name));
        let stamp_path = out_dir.join(format!("{}.stamp", component.name));
        let stamp = input_hash(root, component, source_dir);
        if output.is_file() && fs::read_to_string(&stamp_path).ok().as_deref() == Some(&stamp) {
            continue;
        }
        let _ = fs::remove_file(&stamp_path);
        let wit = match component.extra_wit {
            Some(extra) => combined_wit(root, &out_dir, component.name, extra),
            None => root.join("wit"),
        };
        let partial = out_dir.join(format!("{}.wasm.partial", component.name));
        let child = command(root, component, &wit, &partial)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|error| {
                panic!(
                    "cannot run the {} build script for {}: {error}\n\nThe Python, \
                     JavaScript and C toolchains come from `sdk/install-toolchains`.",
                    language_name(component.language),
                    component.source
                )
            });
        running.push((component, child, output, stamp));
    }

    let mut failures = Vec::new();
    for (component, child, output, stamp) in running {
        let partial = out_dir.join(format!("{}.wasm.partial", component.name));
        let result = child.wait_with_output().unwrap_or_else(|error| {
            panic!("cannot wait for the build of {}: {error}", component.source)
        });
        if !result.status.success() {
            failures.push(format!(
                "building {} ({}) failed ({}):\n{}{}",
                component.source,
                language_name(component.language),
                result.status,
                String::from_utf8_lossy(&result.stdout),
                String::from_utf8_lossy(&result.stderr),
            ));
            continue;
        }
        fs::rename(&partial, &output).unwrap_or_else(|error| {
            panic!("cannot move {} into place: {error}", partial.display())
        });
        fs::write(out_dir.join(format!("{}.stamp", component.name)), stamp).unwrap_or_else(
            |error| panic!("cannot write the stamp of {}: {error}", component.name),
        );
    }
    if !failures.is_empty() {
        panic!(
            "{}\n\nThe Python, JavaScript and C toolchains come from `sdk/install-toolchains` \
             (run it once; reruns are instant).",
            failures.join("\n\n")
        );
    }
    out_dir
}

fn language_name(language: Language) -> &'static str {
    match language {
        Language::Python => "Python",
        Language::JavaScript => "JavaScript",
        Language::C => "C",
    }
}

/// The command that builds `component` into `output`.
fn command(root: &Path, component: &Foreign, wit: &Path, output: &Path) -> Command {
    let source = root.join(component.source);
    let mut command = match component.language {
        Language::Python => Command::new(root.join("sdk/python/build")),
        Language::C => Command::new(root.join("sdk/c/build")),
        Language::JavaScript => {
            let mut node = Command::new("node");
            node.arg(root.join("sdk/js/build.mjs"));
            node
        }
    };
    command
        .arg(source)
        .arg(wit)
        .arg(component.world)
        .arg(output)
        .current_dir(root);
    command
}

/// A WIT directory with the component's own world at the top and the contract with its
/// WASI dependencies under `deps/`, as the componentize tools expect a world that includes
/// another package.
fn combined_wit(root: &Path, out_dir: &Path, name: &str, extra: &str) -> PathBuf {
    let dir = out_dir.join(format!("{name}-wit"));
    let _ = fs::remove_dir_all(&dir);
    let deps = dir.join("deps");
    fs::create_dir_all(&deps)
        .unwrap_or_else(|error| panic!("cannot create {}: {error}", deps.display()));
    let copy_wit_files = |from: &Path, to: &Path| {
        let entries = fs::read_dir(from)
            .unwrap_or_else(|error| panic!("cannot list {}: {error}", from.display()));
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|extension| extension == "wit") {
                let target = to.join(entry.file_name());
                fs::copy(&path, &target)
                    .unwrap_or_else(|error| panic!("cannot copy {}: {error}", path.display()));
            }
        }
    };
    copy_wit_files(&root.join(extra), &dir);
    copy_wit_files(&root.join("wit"), &deps);
    copy_wit_files(&root.join("wit/deps"), &deps);
    dir
}

/// A hash of everything the component is built from.
fn input_hash(root: &Path, component: &Foreign, source_dir: &Path) -> String {
    let mut hasher = DefaultHasher::new();
    (component.name, component.world, component.source).hash(&mut hasher);
    let mut inputs = vec![root.join(source_dir), root.join("wit")];
    inputs.extend(component.extra_wit.map(|extra| root.join(extra)));
    inputs.extend(
        toolchain_inputs(component.language)
            .iter()
            .map(|path| root.join(path)),
    );
    for input in inputs {
        hash_path(root, &input, &mut hasher);
    }
    format!("{:016x}\n", hasher.finish())
}

/// Hashes a file's path and contents, or a directory's files in name order, skipping the
/// caches tools leave behind.
fn hash_path(root: &Path, path: &Path, hasher: &mut DefaultHasher) {
    path.strip_prefix(root).unwrap_or(path).hash(hasher);
    if path.is_dir() {
        let mut entries: Vec<PathBuf> = fs::read_dir(path)
            .unwrap_or_else(|error| panic!("cannot list {}: {error}", path.display()))
            .flatten()
            .map(|entry| entry.path())
            .filter(|path| {
                let name = path
                    .file_name()
                    .and_then(|name| name.to_str())
                    .unwrap_or("");
                name != "__pycache__" && name != "node_modules"
            })
            .collect();
        entries.sort();
        for entry in entries {
            hash_path(root, &entry, hasher);
        }
    } else {
        let bytes = fs::read(path)
            .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()));
        bytes.hash(hasher);
    }
}
