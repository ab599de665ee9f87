//! The private cluster against the real Postgres binaries: create, reuse, recover from a
//! killed run, and clear errors.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use courier_embedded_postgres::{EmbeddedPostgres, Error, Options, Settings};

fn options() -> Options {
    let mut settings = Settings::throwaway();
    settings
        .set("shared_buffers", "32MB")
        .set("max_connections", "20");
    Options {
        settings,
        initdb_no_sync: true,
        ..Options::default()
    }
}

/// A temporary directory the `postgres` user may enter (when the tests run as root).
fn temp_dir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("courier-epg-")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

/// Runs a query through `psql` from the cluster's own binaries; returns its output.
fn query(cluster: &EmbeddedPostgres, sql: &str) -> String {
    let psql = cluster.binaries().dir.join("psql");
    let output = Command::new(psql)
        .args(["-X", "-A", "-t", "-c", sql])
        .arg(cluster.url())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "psql failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

/// Whether `pid` is a running process (not gone, not a zombie waiting to be reaped).
fn process_alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // "pid (comm) S ...": the state follows the last parenthesis.
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next());
    !matches!(state, Some("Z" | "X") | None)
}

#[test]
fn a_new_directory_gets_a_cluster_that_is_reused_on_the_next_start() {
    let dir = temp_dir();
    let data = dir.path().join("data");

    let mut cluster = EmbeddedPostgres::start(&data, options()).unwrap();
    assert!(cluster.url().starts_with("postgres://postgres@127.0.0.1:"));
    assert_eq!(query(&cluster, "SHOW server_encoding"), "UTF8");
    assert_eq!(query(&cluster, "SHOW shared_buffers"), "32MB");
    query(
        &cluster,
        "CREATE TABLE kept (n int); INSERT INTO kept VALUES (42)",
    );
    let pid = cluster.postmaster_pid().unwrap();
    cluster.stop().unwrap();
    assert!(!process_alive(pid), "the server stopped");

    let cluster = EmbeddedPostgres::start(&data, options()).unwrap();
    assert_eq!(query(&cluster, "SELECT n FROM kept"), "42");
    let pid = cluster.postmaster_pid().unwrap();
    drop(cluster);
    assert!(!process_alive(pid), "dropping stops the server");
    assert!(data.join("postgres.log").exists());
}

#[test]
fn a_server_left_by_a_killed_run_and_a_stale_pid_file_are_handled() {
    let dir = temp_dir();
    let data = dir.path().join("data");
    let cluster = EmbeddedPostgres::start(&data, options()).unwrap();
    let pid = cluster.postmaster_pid().unwrap();
    // The owning process dies without stopping the server.
    std::mem::forget(cluster);
    assert!(process_alive(pid));

    let cluster = EmbeddedPostgres::start(&data, options()).unwrap();
    assert!(!process_alive(pid), "the leftover server was stopped");
    assert_eq!(query(&cluster, "SELECT 1"), "1");
    let new_pid = cluster.postmaster_pid().unwrap();
    drop(cluster);
    assert!(!process_alive(new_pid));

    // A postmaster.pid naming some unrelated live process (here: this test) is stale.
    let pid_file = data.join("postmaster.pid");
    std::fs::write(
        &pid_file,
        format!("{}\n{}\n", std::process::id(), data.display()),
    )
    .unwrap();
    let cluster = EmbeddedPostgres::start(&data, options()).unwrap();
    assert_eq!(query(&cluster, "SELECT 2"), "2");
}

#[test]
fn a_directory_that_is_not_a_cluster_is_refused() {
    let dir = temp_dir();
    std::fs::write(dir.path().join("notes.txt"), "mine").unwrap();
    let error = EmbeddedPostgres::start(dir.path(), options()).unwrap_err();
    assert!(matches!(error, Error::NotADataDirectory(_)), "{error}");
    assert!(
        error
            .to_string()
            .contains("neither empty nor a PostgreSQL data directory")
    );
}

#[test]
fn a_bin_dir_without_postgres_says_what_is_missing() {
    let dir = temp_dir();
    let options = Options {
        bin_dir: Some(dir.path().to_path_buf()),
        ..options()
    };
    let error = EmbeddedPostgres::start(dir.path().join("data"), options).unwrap_err();
    assert!(
        error
            .to_string()
            .ends_with("does not contain the PostgreSQL binary `postgres`"),
        "{error}"
    );
}

#[test]
fn a_failed_start_reports_the_end_of_the_server_log() {
    let dir = temp_dir();
    let mut options = options();
    options.settings.set("shared_buffers", "not-a-size");
    let error = EmbeddedPostgres::start(dir.path().join("data"), options).unwrap_err();
    let text = error.to_string();
    assert!(text.contains("pg_ctl"), "{text}");
    assert!(text.contains("last lines of"), "{text}");
    assert!(text.contains("shared_buffers"), "{text}");
}
