//! The plugins directory: every `NAME.wasm` directly inside it is a plugin, with an optional
//! operator sidecar `NAME.toml` beside it.

use std::io;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// One plugin's files. The plugin is named after its file: `welcome-email.wasm` is
/// `welcome-email`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginFiles {
    /// The file stem.
    pub name: String,
    /// `DIR/NAME.wasm`.
    pub wasm: PathBuf,
    /// `DIR/NAME.toml`, which may not exist.
    pub sidecar: PathBuf,
}

impl PluginFiles {
    /// The files of the plugin `name` in `dir`.
    pub fn new(dir: &Path, name: &str) -> PluginFiles {
        PluginFiles {
            name: name.to_owned(),
            wasm: dir.join(format!("{name}.wasm")),
            sidecar: dir.join(format!("{name}.toml")),
        }
    }
}

/// The plugins in `dir`, sorted by name. Hidden files (editors' temporary copies) are skipped.
pub fn scan(dir: &Path) -> io::Result<Vec<PluginFiles>> {
    let mut plugins = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if !entry.file_type()?.is_file() && !entry.path().is_file() {
            continue;
        }
        if let Some(name) = plugin_name(&entry.path(), "wasm") {
            plugins.push(PluginFiles::new(dir, &name));
        }
    }
    plugins.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(plugins)
}

/// The plugin a changed path belongs to: `NAME` for `NAME.wasm` or `NAME.toml` directly in
/// the directory; `None` for anything else.
pub fn plugin_of_path(path: &Path) -> Option<String> {
    plugin_name(path, "wasm").or_else(|| plugin_name(path, "toml"))
}

fn plugin_name(path: &Path, extension: &str) -> Option<String> {
    if path.extension()? != extension {
        return None;
    }
    let stem = path.file_stem()?.to_str()?;
    if stem.is_empty() || stem.starts_with('.') {
        return None;
    }
    Some(stem.to_owned())
}

/// Whether `name` can name a plugin: it appears in metrics, logs and URLs.
pub fn is_valid_plugin_name(name: &str) -> bool {
    crate::sidecar::is_name_part(name)
}

/// A digest of a plugin's component and sidecar, to tell whether a file really changed.
pub fn fingerprint(wasm: &[u8], sidecar: Option<&str>) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update((wasm.len() as u64).to_le_bytes());
    hasher.update(wasm);
    if let Some(sidecar) = sidecar {
        hasher.update([1]);
        hasher.update(sidecar.as_bytes());
    }
    hasher.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_to_plugin_names() {
        let check = |path: &str, expected: Option<&str>| {
            assert_eq!(
                plugin_of_path(Path::new(path)).as_deref(),
                expected,
                "{path}"
            );
        };
        check("/p/welcome-email.wasm", Some("welcome-email"));
        check("/p/welcome-email.toml", Some("welcome-email"));
        check("/p/.welcome-email.wasm.swp", None);
        check("/p/.hidden.wasm", None);
        check("/p/readme.md", None);
        check("/p/welcome-email.wasm.tmp", None);
        check("/p/noext", None);
    }

    #[test]
    fn scan_lists_components_directly_in_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        for file in [
            "b.wasm",
            "a.wasm",
            "a.toml",
            "c.toml",
            ".tmp.wasm",
            "notes.txt",
        ] {
            std::fs::write(dir.path().join(file), b"x").unwrap();
        }
        std::fs::create_dir(dir.path().join("nested.wasm")).unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/d.wasm"), b"x").unwrap();
        let names: Vec<String> = scan(dir.path())
            .unwrap()
            .into_iter()
            .map(|p| p.name)
            .collect();
        assert_eq!(names, ["a", "b"]);
    }

    #[test]
    fn fingerprints_change_with_either_file() {
        let base = fingerprint(b"wasm", None);
        assert_ne!(base, fingerprint(b"wasm", Some("")));
        assert_ne!(base, fingerprint(b"wasn", None));
        assert_eq!(base, fingerprint(b"wasm", None));
    }
}
