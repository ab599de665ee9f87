//! Server settings for the private cluster, tuned for a development or benchmark machine
//! and written to `courier.conf` in the data directory on every start.

use std::collections::BTreeMap;
use std::path::Path;

/// Server settings (`postgresql.conf` parameters). The connection parameters
/// (`listen_addresses`, `port`, `unix_socket_directories`) are always set by the cluster
/// itself; everything else can be changed with [`Settings::set`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    values: BTreeMap<String, String>,
}

impl Default for Settings {
    /// Durable (fsync and synchronous commit stay on) and sized for a development or
    /// benchmark machine: 256MB of shared buffers, 200 connections, rare checkpoints, no
    /// JIT, an eager autovacuum for the outbox's high-churn tables.
    fn default() -> Self {
        let mut settings = Self {
            values: BTreeMap::new(),
        };
        for (name, value) in [
            ("shared_buffers", "256MB"),
            ("max_connections", "200"),
            ("work_mem", "16MB"),
            ("maintenance_work_mem", "256MB"),
            ("effective_cache_size", "2GB"),
            ("random_page_cost", "1.1"),
            // Short, frequent statements: compiling them costs more than it saves.
            ("jit", "off"),
            ("max_wal_size", "4GB"),
            ("min_wal_size", "256MB"),
            ("checkpoint_timeout", "15min"),
            ("checkpoint_completion_target", "0.9"),
            ("wal_compression", "on"),
            ("autovacuum_naptime", "10s"),
            ("autovacuum_vacuum_cost_limit", "2000"),
            ("log_min_messages", "warning"),
            ("log_line_prefix", "%m [%p] "),
            ("timezone", "UTC"),
            ("log_timezone", "UTC"),
        ] {
            settings.set(name, value);
        }
        settings
    }
}

impl Settings {
    /// No settings at all beyond the connection parameters: Postgres' own defaults.
    pub fn empty() -> Self {
        Self {
            values: BTreeMap::new(),
        }
    }

    /// Settings for a throw-away test cluster: the defaults with durability switched off
    /// (`fsync`, `synchronous_commit` and `full_page_writes` off). Never for data you keep.
    pub fn throwaway() -> Self {
        let mut settings = Self::default();
        settings.set("fsync", "off");
        settings.set("synchronous_commit", "off");
        settings.set("full_page_writes", "off");
        settings
    }

    /// Sets one parameter, replacing an earlier value.
    pub fn set(&mut self, name: impl Into<String>, value: impl Into<String>) -> &mut Self {
        self.values.insert(name.into(), value.into());
        self
    }

    /// Removes a parameter, so Postgres' default applies.
    pub fn remove(&mut self, name: &str) -> &mut Self {
        self.values.remove(name);
        self
    }

    /// The value of a parameter, if set.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    /// Every parameter set, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.values.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The configuration file text for a server on `127.0.0.1:port` with its unix socket in
    /// `socket_dir`.
    pub(crate) fn to_config(&self, port: u16, socket_dir: &Path) -> String {
        let mut text = String::from("# Written by Courier on every start; edits are lost.\n");
        let connection = [
            ("listen_addresses", "127.0.0.1".to_owned()),
            ("port", port.to_string()),
            (
                "unix_socket_directories",
                socket_dir.to_string_lossy().into_owned(),
            ),
        ];
        let user = self
            .values
            .iter()
            .filter(|(name, _)| !connection.iter().any(|(fixed, _)| fixed == name))
            .map(|(name, value)| (name.as_str(), value.clone()));
        for (name, value) in connection.iter().map(|(n, v)| (*n, v.clone())).chain(user) {
            text.push_str(&format!("{name} = '{}'\n", value.replace('\'', "''")));
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_parameters_cannot_be_overridden_and_values_are_quoted() {
        let mut settings = Settings::empty();
        settings.set("port", "1").set("application_name", "it's");
        let text = settings.to_config(5432, Path::new("/data"));
        assert_eq!(
            text,
            "# Written by Courier on every start; edits are lost.\n\
             listen_addresses = '127.0.0.1'\n\
             port = '5432'\n\
             unix_socket_directories = '/data'\n\
             application_name = 'it''s'\n"
        );
    }
}
