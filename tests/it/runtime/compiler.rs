//! Compiling in a process of its own (`RuntimeConfig::compiler`), with the real
//! `courier compile-plugin` and with stand-ins that fail in each way a process can.

use std::path::{Path, PathBuf};

use courier_runtime::{
    CompilerCommand, LoadError, Outcome, PluginSettings, Runtime, RuntimeConfig,
};
use courier_tests::components::NOOP;

use super::{config_with_cache, delivery, runtime_with_cache};

const BINARY: &str = env!("CARGO_BIN_EXE_courier-under-test");

/// The suite's runtime, compiling with `compiler`.
fn runtime_compiling_with(cache_dir: &Path, compiler: CompilerCommand) -> Runtime {
    Runtime::new(RuntimeConfig {
        compiler: Some(compiler),
        ..config_with_cache(cache_dir.to_path_buf())
    })
    .expect("the runtime starts")
}

/// `bash -c SCRIPT BINARY ARGS...`: the script sees the courier binary as `$0` and the
/// compiler's arguments as `"$@"`.
fn script(script: &str) -> CompilerCommand {
    CompilerCommand {
        program: PathBuf::from("bash"),
        args: vec!["-c".into(), script.into(), BINARY.into()],
    }
}

#[tokio::test]
async fn the_compiler_process_writes_the_entry_the_runtime_then_maps() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let status = dir.path().join("status");
    // The real compiler, wrapped to record its exit status: a runtime that fell back to
    // compiling in-process would load the plugin too.
    let compiler = script(&format!(
        r#""$0" compile-plugin "$@"; status=$?; echo $status > '{}'; exit $status"#,
        status.display()
    ));
    let plugin = runtime_compiling_with(&cache, compiler)
        .load_file(NOOP, PluginSettings::default())
        .await
        .unwrap();
    assert_eq!(std::fs::read_to_string(&status).unwrap().trim(), "0");
    let stats = plugin.load_stats();
    assert!(stats.compiled);
    let entry = stats.cache_file.clone().unwrap();
    assert!(entry.starts_with(&cache) && entry.exists(), "{entry:?}");
    let report = plugin.handle(&delivery("bench.noop", "{}", "bench")).await;
    assert_eq!(report.result, Ok(Outcome::Ok));

    // The entry is the one an in-process compile would have written: a runtime without a
    // compiler process reads it instead of compiling.
    let again = runtime_with_cache(cache)
        .load_file(NOOP, PluginSettings::default())
        .await
        .unwrap();
    assert!(!again.load_stats().compiled);
}

#[tokio::test]
async fn a_component_the_compiler_process_rejects_fails_to_load_with_its_message() {
    for (script_text, message) in [
        (
            "echo 'unsupported feature: frobnication' >&2; exit 65",
            "cannot compile the component: unsupported feature: frobnication",
        ),
        (
            "exit 65",
            "cannot compile the component: the compiler process exited with status 65 and no \
             message",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let error = runtime_compiling_with(dir.path(), script(script_text))
            .load_file(NOOP, PluginSettings::default())
            .await
            .unwrap_err();
        assert!(matches!(error, LoadError::Compile(_)), "{error:?}");
        assert_eq!(error.to_string(), message);
    }
}

#[tokio::test]
async fn a_compiler_process_that_is_killed_twice_fails_the_load_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().join("runs");
    let compiler = script(&format!("echo run >> '{}'; kill -KILL $$", runs.display()));
    let error = runtime_compiling_with(&dir.path().join("cache"), compiler)
        .load_file(NOOP, PluginSettings::default())
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(
        error,
        "cannot compile the component: the compiler process was killed by signal 9 (SIGKILL: \
         out of memory?) (twice)"
    );
    assert_eq!(std::fs::read_to_string(&runs).unwrap(), "run\nrun\n");
}

#[tokio::test]
async fn a_compiler_process_killed_once_is_run_again() {
    let dir = tempfile::tempdir().unwrap();
    let killed = dir.path().join("killed");
    // Killed the first time (as the out-of-memory killer would), the real compiler after.
    let compiler = script(&format!(
        r#"if [ -e '{0}' ]; then exec "$0" compile-plugin "$@"; fi; touch '{0}'; kill -KILL $$"#,
        killed.display()
    ));
    let plugin = runtime_compiling_with(&dir.path().join("cache"), compiler)
        .load_file(NOOP, PluginSettings::default())
        .await
        .unwrap();
    assert!(killed.exists(), "the first run was killed");
    let report = plugin.handle(&delivery("bench.noop", "{}", "bench")).await;
    assert_eq!(report.result, Ok(Outcome::Ok));
}

#[tokio::test]
async fn where_the_compiler_process_cannot_do_the_job_the_runtime_compiles_itself() {
    let missing = CompilerCommand {
        program: PathBuf::from("/nonexistent/courier"),
        args: Vec::new(),
    };
    let dir = tempfile::tempdir().unwrap();
    let plugin = runtime_compiling_with(dir.path(), missing)
        .load_file(NOOP, PluginSettings::default())
        .await
        .unwrap();
    assert!(plugin.load_stats().compiled);

    // The real compiler, made to fail in each way but a rejected component, with its exit
    // status recorded (the load would succeed just the same had it not run at all).
    for (compiler, expected_status) in [
        // Another engine (the host's key changed).
        (
            r#"args=("$@"); args[3]=0000000000000000; "$0" compile-plugin "${args[@]}""#,
            "3",
        ),
        // Arguments it does not know.
        (r#""$0" compile-plugin --no-such-flag "$@""#, "2"),
        // The generic failure of scripts and argument parsers.
        (r#"false"#, "1"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let status = dir.path().join("status");
        let recording = script(&format!(
            "{compiler}; status=$?; echo $status > '{}'; exit $status",
            status.display()
        ));
        let plugin = runtime_compiling_with(&dir.path().join("cache"), recording)
            .load_file(NOOP, PluginSettings::default())
            .await
            .unwrap_or_else(|error| panic!("{compiler}: {error}"));
        assert_eq!(
            std::fs::read_to_string(&status).unwrap().trim(),
            expected_status,
            "{compiler}"
        );
        assert!(plugin.load_stats().compiled);
        let report = plugin.handle(&delivery("bench.noop", "{}", "bench")).await;
        assert_eq!(report.result, Ok(Outcome::Ok), "{compiler}");
    }
}

/// The subcommand itself: what it writes, and its exit status for each failure.
#[test]
fn compile_plugin_exits_with_a_status_for_each_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let run = |key: &str, input: &[u8], out: &Path| {
        let mut child = std::process::Command::new(BINARY)
            .arg("compile-plugin")
            .arg("--out")
            .arg(out)
            .args(["--engine-key", key])
            .args(["--max-instances", "16", "--max-memory-bytes"])
            .arg((256u64 << 20).to_string())
            .stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child.stdin.take().unwrap().write_all(input).unwrap();
        let output = child.wait_with_output().unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let noop = std::fs::read(NOOP).unwrap();

    // The host's key is in the name of the entry the runtime writes.
    let cache = dir.path().join("cache");
    let key = {
        let runtime = runtime_with_cache(cache);
        let plugin = tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(runtime.load_file(NOOP, PluginSettings::default()))
            .unwrap();
        let name = plugin.load_stats().cache_file.clone().unwrap();
        let name = name.file_stem().unwrap().to_string_lossy().into_owned();
        name.rsplit_once('-').unwrap().1.to_owned()
    };

    let out = dir.path().join("noop.cwasm");
    assert_eq!(run(&key, &noop, &out), (Some(0), String::new()));
    assert!(std::fs::metadata(&out).unwrap().len() > 0);

    let other = dir.path().join("other.cwasm");
    let (status, stderr) = run("0000000000000000", &noop, &other);
    assert_eq!(status, Some(3), "{stderr}");
    assert!(stderr.contains("is not the host's"), "{stderr}");
    assert!(!other.exists());

    // A cache directory that takes no files (here, a path through a file): refused before
    // the compile, not after it.
    std::fs::write(dir.path().join("file"), b"").unwrap();
    let unwritable = dir.path().join("file").join("noop.cwasm");
    let (status, stderr) = run(&key, &noop, &unwritable);
    assert_eq!(status, Some(3), "{stderr}");
    assert!(stderr.contains("cannot write in"), "{stderr}");

    let garbage = dir.path().join("garbage.cwasm");
    let (status, stderr) = run(&key, b"\0asm\x0d\0\x01\0garbage", &garbage);
    assert_eq!(status, Some(65), "{stderr}");
    assert!(!stderr.trim().is_empty());
    assert!(!garbage.exists());
}
