//! Finding the Postgres server programs: `PATH` first, then the Debian/Ubuntu layout
//! `/usr/lib/postgresql/<major>/bin`, highest major version first.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::Error;

/// Where the Debian and Ubuntu packages install each major version's server programs.
const DEBIAN_ROOT: &str = "/usr/lib/postgresql";

/// The server programs of one Postgres installation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresBinaries {
    /// The directory holding them.
    pub dir: PathBuf,
    /// `initdb`, which creates a cluster.
    pub initdb: PathBuf,
    /// `pg_ctl`, which starts and stops it.
    pub pg_ctl: PathBuf,
    /// `postgres`, the server itself.
    pub postgres: PathBuf,
}

impl PostgresBinaries {
    /// The programs in `dir`, all three of which must exist. Symbolic links (such as
    /// `/usr/local/bin/postgres`) are followed to the installation's own directory, where
    /// the other programs of the same version (`psql`, `pg_dump`) live too.
    pub fn in_dir(dir: &Path) -> Result<Self, Error> {
        let binary = |name: &'static str| {
            let path = dir.join(name);
            if path.is_file() {
                Ok(path.canonicalize().unwrap_or(path))
            } else {
                Err(Error::BinaryMissing {
                    dir: dir.to_path_buf(),
                    binary: name,
                })
            }
        };
        let postgres = binary("postgres")?;
        Ok(Self {
            dir: postgres
                .parent()
                .map_or_else(|| dir.to_path_buf(), Path::to_path_buf),
            initdb: binary("initdb")?,
            pg_ctl: binary("pg_ctl")?,
            postgres,
        })
    }

    /// The major version, as `PG_VERSION` files spell it (`15`), from `postgres --version`.
    pub fn major_version(&self) -> Result<String, Error> {
        let output = Command::new(&self.postgres)
            .arg("--version")
            .output()
            .map_err(|error| Error::Command {
                command: format!("{} --version", self.postgres.display()),
                detail: error.to_string(),
            })?;
        let text = String::from_utf8_lossy(&output.stdout);
        // "postgres (PostgreSQL) 15.14 (Debian 15.14-0+deb12u1)"
        let version = text
            .split_whitespace()
            .find(|word| word.starts_with(|c: char| c.is_ascii_digit()))
            .unwrap_or_default();
        let major = version.split('.').next().unwrap_or_default();
        if major.is_empty() {
            return Err(Error::Command {
                command: format!("{} --version", self.postgres.display()),
                detail: format!("unexpected output `{}`", text.trim()),
            });
        }
        Ok(major.to_owned())
    }
}

/// Finds `initdb`, `pg_ctl` and `postgres`: in a directory of `PATH` that has all three,
/// else in `/usr/lib/postgresql/<major>/bin` with the highest major version.
pub fn find_binaries() -> Result<PostgresBinaries, Error> {
    if let Some(path) = env::var_os("PATH") {
        for dir in env::split_paths(&path) {
            if let Ok(binaries) = PostgresBinaries::in_dir(&dir) {
                return Ok(binaries);
            }
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir(DEBIAN_ROOT)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let major = entry.file_name().to_str()?.parse().ok()?;
            Some((major, entry.path().join("bin")))
        })
        .collect();
    versions.sort_by_key(|(major, _)| std::cmp::Reverse(*major));
    versions
        .into_iter()
        .find_map(|(_, dir)| PostgresBinaries::in_dir(&dir).ok())
        .ok_or(Error::BinariesNotFound)
}
