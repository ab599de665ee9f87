//! The plugins the host serves, one active version per plugin name. Loading happens in the
//! background through the runtime's compiled cache; a new version replaces the active one
//! atomically, and a file that fails to load never replaces a working version: its error is
//! kept for `GET /v1/plugins`. Two plugins may not serve the same (queue, event).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use courier_runtime::{Plugin, Runtime};
use serde::Serialize;
use tokio::sync::watch;

use crate::plugins_dir::{self, PluginFiles};
use crate::sidecar::{Sidecar, Subscription};

/// One loaded version of a plugin, with everything the dispatcher needs to serve it.
#[derive(Debug)]
pub struct PluginVersion {
    /// The plugin's name: its file stem.
    pub name: String,
    /// Increases with every version loaded by this host.
    pub generation: u64,
    /// The loaded component.
    pub plugin: Plugin,
    /// The operator's sidecar (defaults when there is none).
    pub sidecar: Sidecar,
    /// How failed deliveries are retried.
    pub retry: courier_outbox::RetryPolicy,
    /// What it serves: the sidecar's override, or what the plugin asked for.
    pub subscriptions: Vec<Subscription>,
    /// The digest of its component and sidecar.
    pub fingerprint: [u8; 32],
    /// When this version became active.
    pub loaded_at: DateTime<Utc>,
}

/// The active versions, by plugin name, as one immutable snapshot.
pub type ActiveSet = Arc<BTreeMap<String, Arc<PluginVersion>>>;

/// Why a plugin's latest files could not be loaded.
#[derive(Debug, Clone, Serialize)]
pub struct LoadFailure {
    /// What went wrong, naming the file.
    pub message: String,
    /// When.
    pub at: DateTime<Utc>,
    /// A conflict may resolve when another plugin goes away; it is retried then.
    #[serde(skip)]
    pub conflict: bool,
}

/// What `GET /v1/plugins` shows for one plugin.
#[derive(Debug, Clone, Serialize)]
pub struct PluginStatus {
    /// The plugin's name (its file stem).
    pub name: String,
    /// `loaded`, `failed` (nothing active) or `loading`.
    pub state: &'static str,
    /// The `.wasm` file.
    pub file: PathBuf,
    /// The active version, when one is loaded.
    pub active: Option<ActiveStatus>,
    /// The latest load failure, when the latest files did not load. With an active version,
    /// that version keeps serving.
    pub error: Option<LoadFailure>,
}

/// The active version of a plugin, as shown by the API.
#[derive(Debug, Clone, Serialize)]
pub struct ActiveStatus {
    /// The name the plugin gives itself.
    pub plugin_name: String,
    /// The version the plugin gives itself.
    pub version: String,
    /// `handler` or `destination`.
    pub kind: &'static str,
    /// What it serves.
    pub subscriptions: Vec<SubscriptionStatus>,
    /// When it became active.
    pub loaded_at: DateTime<Utc>,
    /// The first bytes of its fingerprint, in hex.
    pub fingerprint: String,
    /// Concurrent calls allowed.
    pub concurrency: u32,
    /// Per-call timeout, in milliseconds.
    pub timeout_ms: u64,
}

/// One subscription, as shown by the API.
#[derive(Debug, Clone, Serialize)]
pub struct SubscriptionStatus {
    pub queue: String,
    pub topic: String,
    pub events: Vec<String>,
}

#[derive(Debug, Default)]
struct Entry {
    active: Option<Arc<PluginVersion>>,
    failure: Option<LoadFailure>,
    loading: bool,
}

/// The host's plugins.
pub struct Registry {
    dir: PathBuf,
    runtime: Runtime,
    outbox: courier_outbox::Outbox,
    entries: Mutex<BTreeMap<String, Entry>>,
    load_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    active: watch::Sender<ActiveSet>,
    next_generation: AtomicU64,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadResult {
    /// A new version is active.
    Loaded,
    /// The files are the same as the active version's.
    Unchanged,
    /// The files are gone; the plugin no longer serves anything.
    Removed,
    /// The files did not load; the previous version (if any) keeps serving.
    Failed(String),
}

impl Registry {
    /// An empty registry for the plugins in `dir`.
    pub fn new(dir: &Path, runtime: Runtime, outbox: courier_outbox::Outbox) -> Registry {
        let (active, _) = watch::channel(ActiveSet::default());
        Registry {
            dir: dir.to_owned(),
            runtime,
            outbox,
            entries: Mutex::new(BTreeMap::new()),
            load_locks: Mutex::new(HashMap::new()),
            active,
            next_generation: AtomicU64::new(1),
        }
    }

    /// The plugins directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Follows the active versions.
    pub fn subscribe(&self) -> watch::Receiver<ActiveSet> {
        self.active.subscribe()
    }

    /// The active versions now.
    pub fn active(&self) -> ActiveSet {
        self.active.borrow().clone()
    }

    /// Loads every plugin in the directory, two at a time.
    pub async fn load_all(&self) -> std::io::Result<()> {
        let plugins = plugins_dir::scan(&self.dir)?;
        let mut names = plugins.into_iter().map(|files| files.name);
        let mut running = futures::stream::FuturesUnordered::new();
        use futures::StreamExt;
        for name in names.by_ref().take(2) {
            running.push(self.reload_owned(name));
        }
        while running.next().await.is_some() {
            if let Some(name) = names.next() {
                running.push(self.reload_owned(name));
            }
        }
        Ok(())
    }

    async fn reload_owned(&self, name: String) -> ReloadResult {
        self.reload(&name).await
    }

    /// Reads the files of plugin `name` again and acts on them: load a new version, keep the
    /// current one, or stop serving a removed plugin.
    pub async fn reload(&self, name: &str) -> ReloadResult {
        let lock = {
            let mut locks = self.load_locks.lock().unwrap();
            locks.entry(name.to_owned()).or_default().clone()
        };
        let result = {
            let _serialized = lock.lock().await;
            self.set_loading(name, true);
            let result = self.reload_locked(name).await;
            self.set_loading(name, false);
            result
        };
        match &result {
            ReloadResult::Loaded => tracing::info!(plugin = name, "plugin loaded"),
            ReloadResult::Removed => {
                tracing::info!(
                    plugin = name,
                    "plugin removed; its queues keep their backlog"
                );
                self.retry_conflicted(name).await;
            }
            ReloadResult::Failed(message) => {
                let serving = self.active.borrow().contains_key(name);
                if serving {
                    tracing::error!(plugin = name, error = %message, "plugin failed to load; the previous version keeps serving");
                } else {
                    tracing::error!(plugin = name, error = %message, "plugin failed to load");
                }
            }
            ReloadResult::Unchanged => {}
        }
        result
    }

    fn set_loading(&self, name: &str, loading: bool) {
        let mut entries = self.entries.lock().unwrap();
        if loading {
            entries.entry(name.to_owned()).or_default().loading = true;
            return;
        }
        let forget = match entries.get_mut(name) {
            Some(entry) => {
                entry.loading = false;
                entry.active.is_none() && entry.failure.is_none()
            }
            None => false,
        };
        if forget {
            entries.remove(name);
        }
    }

    async fn reload_locked(&self, name: &str) -> ReloadResult {
        let files = PluginFiles::new(&self.dir, name);
        if !plugins_dir::is_valid_plugin_name(name) {
            let message = format!(
                "{}: a plugin's file name must use letters, digits, `_` and `-` only",
                files.wasm.display()
            );
            return self.fail(name, message, false);
        }
        let wasm = match tokio::fs::read(&files.wasm).await {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                return self.remove(name);
            }
            Err(error) => {
                let message = format!("cannot read {}: {error}", files.wasm.display());
                return self.fail(name, message, false);
            }
        };
        let sidecar_text = match tokio::fs::read_to_string(&files.sidecar).await {
            Ok(text) => Some(text),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
            Err(error) => {
                let message = format!("cannot read {}: {error}", files.sidecar.display());
                return self.fail(name, message, false);
            }
        };
        let fingerprint = plugins_dir::fingerprint(&wasm, sidecar_text.as_deref());
        if self.is_active_fingerprint(name, &fingerprint) {
            self.clear_failure(name);
            return ReloadResult::Unchanged;
        }
        let sidecar = match &sidecar_text {
            Some(text) => Sidecar::parse(&files.sidecar, text, |var| std::env::var(var).ok()),
            None => Ok(Sidecar::default()),
        };
        let sidecar = match sidecar {
            Ok(sidecar) => sidecar,
            Err(error) => return self.fail(name, error.to_string(), false),
        };
        let retry = match retry_policy(&files.sidecar, &sidecar) {
            Ok(retry) => retry,
            Err(message) => return self.fail(name, message, false),
        };
        let plugin = match self.runtime.load(wasm, sidecar.plugin_settings(name)).await {
            Ok(plugin) => plugin,
            Err(error) => {
                let message = format!("{}: {error}", files.wasm.display());
                return self.fail(name, message, false);
            }
        };
        let subscriptions = sidecar.subscriptions.clone().unwrap_or_else(|| {
            plugin
                .info()
                .subscriptions
                .iter()
                .map(|s| Subscription {
                    queue: s.queue.clone(),
                    topic: s.topic.clone(),
                    events: s.events.clone(),
                })
                .collect()
        });
        if let Some(conflict) = self.conflict(name, &subscriptions) {
            return self.fail(name, conflict, true);
        }
        if let Err(error) = self.declare_routes(&subscriptions).await {
            let message = format!("cannot declare the routes of {name}: {error}");
            return self.fail(name, message, false);
        }
        let version = Arc::new(PluginVersion {
            name: name.to_owned(),
            generation: self.next_generation.fetch_add(1, Ordering::Relaxed),
            plugin,
            sidecar,
            retry,
            subscriptions,
            fingerprint,
            loaded_at: Utc::now(),
        });
        // Checked again under the lock: another plugin may have been activated meanwhile.
        let mut entries = self.entries.lock().unwrap();
        if let Some(conflict) = conflict_in(&entries, name, &version.subscriptions) {
            drop(entries);
            return self.fail(name, conflict, true);
        }
        let entry = entries.entry(name.to_owned()).or_default();
        entry.active = Some(version.clone());
        entry.failure = None;
        self.publish_active(&entries);
        ReloadResult::Loaded
    }

    async fn declare_routes(&self, subscriptions: &[Subscription]) -> Result<(), String> {
        for subscription in subscriptions {
            let route = courier_outbox::Route::new(
                &subscription.queue,
                &subscription.topic,
                &subscription.events,
            )
            .map_err(|error| error.to_string())?;
            self.outbox
                .declare(&route)
                .await
                .map_err(|error| error.to_string())?;
        }
        Ok(())
    }

    fn is_active_fingerprint(&self, name: &str, fingerprint: &[u8; 32]) -> bool {
        let entries = self.entries.lock().unwrap();
        entries
            .get(name)
            .and_then(|entry| entry.active.as_ref())
            .is_some_and(|version| &version.fingerprint == fingerprint)
    }

    fn clear_failure(&self, name: &str) {
        let mut entries = self.entries.lock().unwrap();
        if let Some(entry) = entries.get_mut(name) {
            entry.failure = None;
        }
    }

    fn conflict(&self, name: &str, subscriptions: &[Subscription]) -> Option<String> {
        let entries = self.entries.lock().unwrap();
        conflict_in(&entries, name, subscriptions)
    }

    fn fail(&self, name: &str, message: String, conflict: bool) -> ReloadResult {
        let mut entries = self.entries.lock().unwrap();
        entries.entry(name.to_owned()).or_default().failure = Some(LoadFailure {
            message: message.clone(),
            at: Utc::now(),
            conflict,
        });
        ReloadResult::Failed(message)
    }

    fn remove(&self, name: &str) -> ReloadResult {
        let mut entries = self.entries.lock().unwrap();
        entries.remove(name);
        self.publish_active(&entries);
        ReloadResult::Removed
    }

    /// Plugins refused for a conflict get another chance when another plugin went away.
    async fn retry_conflicted(&self, removed: &str) {
        let conflicted: Vec<String> = {
            let entries = self.entries.lock().unwrap();
            entries
                .iter()
                .filter(|(name, entry)| {
                    name.as_str() != removed && entry.failure.as_ref().is_some_and(|f| f.conflict)
                })
                .map(|(name, _)| name.clone())
                .collect()
        };
        for name in conflicted {
            Box::pin(self.reload(&name)).await;
        }
    }

    fn publish_active(&self, entries: &BTreeMap<String, Entry>) {
        let active: BTreeMap<String, Arc<PluginVersion>> = entries
            .iter()
            .filter_map(|(name, entry)| Some((name.clone(), entry.active.clone()?)))
            .collect();
        self.active.send_replace(Arc::new(active));
    }

    /// Every plugin the host knows of: active versions and load errors.
    pub fn statuses(&self) -> Vec<PluginStatus> {
        let entries = self.entries.lock().unwrap();
        entries
            .iter()
            .map(|(name, entry)| PluginStatus {
                name: name.clone(),
                state: match (&entry.active, entry.loading) {
                    (_, true) => "loading",
                    (Some(_), false) => "loaded",
                    (None, false) => "failed",
                },
                file: PluginFiles::new(&self.dir, name).wasm,
                active: entry.active.as_ref().map(|version| active_status(version)),
                error: entry.failure.clone(),
            })
            .collect()
    }
}

fn active_status(version: &PluginVersion) -> ActiveStatus {
    let info = version.plugin.info();
    ActiveStatus {
        plugin_name: info.name.clone(),
        version: info.version.clone(),
        kind: version.plugin.kind().as_str(),
        subscriptions: version
            .subscriptions
            .iter()
            .map(|s| SubscriptionStatus {
                queue: s.queue.clone(),
                topic: s.topic.clone(),
                events: s.events.clone(),
            })
            .collect(),
        loaded_at: version.loaded_at,
        fingerprint: hex::encode(&version.fingerprint[..8]),
        concurrency: version.sidecar.limits.concurrency,
        timeout_ms: u64::try_from(version.sidecar.limits.timeout.as_millis()).unwrap_or(u64::MAX),
    }
}

/// The first (queue, event) of `subscriptions` another active plugin already serves.
fn conflict_in(
    entries: &BTreeMap<String, Entry>,
    name: &str,
    subscriptions: &[Subscription],
) -> Option<String> {
    for (other, entry) in entries {
        if other == name {
            continue;
        }
        let Some(active) = &entry.active else {
            continue;
        };
        for mine in subscriptions {
            for theirs in &active.subscriptions {
                if mine.queue != theirs.queue || mine.topic != theirs.topic {
                    continue;
                }
                if let Some(event) = mine.events.iter().find(|e| theirs.events.contains(e)) {
                    return Some(format!(
                        "refused: queue `{}` event `{}.{event}` is already served by plugin `{other}`; \
                         two plugins may not serve the same queue and event (give one of them another \
                         queue in its sidecar's [[subscriptions]])",
                        mine.queue, mine.topic
                    ));
                }
            }
        }
    }
    None
}

/// The sidecar's `[retry]` table as the outbox's policy, or the default policy.
fn retry_policy(path: &Path, sidecar: &Sidecar) -> Result<courier_outbox::RetryPolicy, String> {
    match &sidecar.retry {
        None => Ok(courier_outbox::RetryPolicy::default()),
        Some(table) => toml::Value::Table(table.clone())
            .try_into()
            .map_err(|error| format!("invalid `retry` in {}: {error}", path.display())),
    }
}
