//! Watches the plugins directory and reports which plugins changed, once their files have been
//! quiet for a moment (editors and `cp` write a file in several steps).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::plugins_dir::plugin_of_path;

/// How long a plugin's files must be quiet before it is reloaded.
pub const DEFAULT_DEBOUNCE: Duration = Duration::from_millis(250);

/// A running directory watch. Dropping it stops the watch.
pub struct DirectoryWatch {
    _watcher: notify::RecommendedWatcher,
    changed: mpsc::UnboundedReceiver<String>,
}

/// The watch could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("cannot watch the plugins directory {path}: {source}")]
pub struct WatchError {
    pub path: PathBuf,
    #[source]
    pub source: notify::Error,
}

impl DirectoryWatch {
    /// Watches `dir` (not its subdirectories). Changes come out of [`DirectoryWatch::next`]
    /// as plugin names, each once per burst of events that stayed quiet for `debounce`.
    pub fn start(dir: &Path, debounce: Duration) -> Result<DirectoryWatch, WatchError> {
        let (raw_sender, raw_receiver) = mpsc::unbounded_channel::<String>();
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
                Ok(event) => {
                    if matches!(event.kind, notify::EventKind::Access(_)) {
                        return;
                    }
                    for path in &event.paths {
                        if let Some(name) = plugin_of_path(path) {
                            // The receiver is gone only when the watch was dropped.
                            let _ = raw_sender.send(name);
                        }
                    }
                }
                Err(error) => tracing::warn!(%error, "plugins directory watch error"),
            })
            .map_err(|source| WatchError {
                path: dir.to_owned(),
                source,
            })?;
        watcher
            .watch(dir, RecursiveMode::NonRecursive)
            .map_err(|source| WatchError {
                path: dir.to_owned(),
                source,
            })?;
        let (sender, changed) = mpsc::unbounded_channel();
        tokio::spawn(debounce_names(raw_receiver, sender, debounce));
        Ok(DirectoryWatch {
            _watcher: watcher,
            changed,
        })
    }

    /// The next plugin whose files changed; `None` once the watch has stopped.
    pub async fn next(&mut self) -> Option<String> {
        self.changed.recv().await
    }
}

/// Forwards each name once it has had no new event for `quiet`.
async fn debounce_names(
    mut raw: mpsc::UnboundedReceiver<String>,
    settled: mpsc::UnboundedSender<String>,
    quiet: Duration,
) {
    let mut pending: HashMap<String, Instant> = HashMap::new();
    loop {
        let next_due = pending.values().min().copied();
        tokio::select! {
            name = raw.recv() => match name {
                Some(name) => {
                    pending.insert(name, Instant::now() + quiet);
                }
                None => break,
            },
            () = sleep_until_or_forever(next_due) => {
                let now = Instant::now();
                let due: Vec<String> = pending
                    .iter()
                    .filter(|(_, at)| **at <= now)
                    .map(|(name, _)| name.clone())
                    .collect();
                for name in due {
                    pending.remove(&name);
                    if settled.send(name).is_err() {
                        return;
                    }
                }
            }
        }
    }
}

async fn sleep_until_or_forever(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_burst_of_events_gives_one_change_per_plugin() {
        let (raw_sender, raw) = mpsc::unbounded_channel();
        let (sender, mut settled) = mpsc::unbounded_channel();
        tokio::spawn(debounce_names(raw, sender, Duration::from_millis(20)));
        for name in ["a", "b", "a", "a", "b"] {
            raw_sender.send(name.to_owned()).unwrap();
        }
        let mut names = vec![settled.recv().await.unwrap(), settled.recv().await.unwrap()];
        names.sort();
        assert_eq!(names, ["a", "b"]);
        drop(raw_sender);
        assert_eq!(settled.recv().await, None);
    }

    #[tokio::test]
    async fn a_written_file_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let mut watch = DirectoryWatch::start(dir.path(), Duration::from_millis(20)).unwrap();
        std::fs::write(dir.path().join("notes.txt"), b"x").unwrap();
        std::fs::write(dir.path().join("mailer.toml"), b"x").unwrap();
        assert_eq!(watch.next().await.as_deref(), Some("mailer"));
    }
}
