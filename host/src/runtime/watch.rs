//! The file watch (`[routes] watch`): a module file that changes is
//! reloaded, on its own, through the [`Reloader`].
//!
//! Each module's parent directory is watched, not the file itself: editors
//! and deploy tools replace a file by writing a new one and renaming it over
//! the old, which a watch on the old file's inode would never see. notify's
//! thread filters the events (only changes to a module file count: reading
//! one, as every reload does, must not trigger the next) and hands the paths
//! to an async task through a bounded channel without ever blocking. The
//! task debounces them (a path is reloaded once no change to it came for
//! [`DEBOUNCE`], so a file written in several steps is loaded once, whole)
//! and reloads under the server's [`Shutdown`]. After every reload the set
//! of watched files is read again, so a `[routes]` that names other files is
//! followed.
//!
//! notify's own debouncers are not used: `notify-debouncer-mini` reports
//! paths without the kind of event, so the open and read of a reload would
//! count as a change, a reload loop.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::event::{AccessKind, AccessMode, ModifyKind};
use notify::{Event, EventKind, RecursiveMode, Watcher as _};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::reload::Reloader;
use crate::shutdown::Shutdown;

/// A module file is reloaded once no change to it came for this long.
pub const DEBOUNCE: Duration = Duration::from_millis(300);

/// Changed paths waiting for the reload task. A full queue drops the path
/// (and logs it): the task is behind, and one queued for the same file
/// reloads it anyway.
const QUEUE: usize = 256;

/// Watches the module files of `reloader`, reloading under `shutdown`.
/// Returns once the directories are watched (a change from then on is
/// seen); one that cannot be watched is logged and the others still are.
pub fn watch_modules(reloader: Reloader, shutdown: &Shutdown) {
    let stop = shutdown.clone();
    let mut changes = reloader.changes();
    let (tx, mut rx) = mpsc::channel::<PathBuf>(QUEUE);
    let mut watched = Watched::start(&reloader, tx.clone());
    shutdown.spawn(async move {
        // Changed module paths and when each is due (trailing debounce).
        let mut due: BTreeMap<PathBuf, Instant> = BTreeMap::new();
        loop {
            let next = due.values().min().copied();
            tokio::select! {
                () = stop.signalled() => return,
                Some(path) = rx.recv() => {
                    if watched.by_path.contains_key(&path) {
                        due.insert(path, Instant::now() + DEBOUNCE);
                    }
                }
                () = sleep_until(next), if next.is_some() => {
                    let now = Instant::now();
                    let ready: Vec<PathBuf> = due.iter().filter(|(_, at)| **at <= now).map(|(p, _)| p.clone()).collect();
                    due.retain(|_, at| *at > now);
                    for module in watched.modules_for(&ready) {
                        // The outcome is logged and counted by the reloader.
                        let _ = reloader.reload(Some(&module), "file watch").await;
                    }
                }
                Ok(()) = changes.changed() => {
                    let files = reloader.watched_files();
                    if files != watched.files {
                        watched = Watched::start(&reloader, tx.clone());
                    }
                }
            }
        }
    });
}

async fn sleep_until(at: Option<Instant>) {
    if let Some(at) = at {
        tokio::time::sleep_until(at).await;
    }
}

/// Whether `kind` can have changed a file's content: written, created,
/// renamed or removed. Opening, reading and metadata changes cannot.
fn changes_content(kind: &EventKind) -> bool {
    match kind {
        EventKind::Create(_) | EventKind::Remove(_) => true,
        EventKind::Modify(ModifyKind::Metadata(_)) => false,
        EventKind::Modify(_) => true,
        // A file written in place is complete when it is closed.
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) | EventKind::Any | EventKind::Other => false,
    }
}

/// The files being watched and the watcher that watches them (dropping it
/// stops notify's thread).
struct Watched {
    files: Vec<(String, PathBuf)>,
    /// Path as notify reports it (canonical directory + file name) -> modules.
    by_path: BTreeMap<PathBuf, BTreeSet<String>>,
    _watcher: Option<notify::RecommendedWatcher>,
}

impl Watched {
    fn start(reloader: &Reloader, tx: mpsc::Sender<PathBuf>) -> Watched {
        let files = reloader.watched_files();
        let mut by_path: BTreeMap<PathBuf, BTreeSet<String>> = BTreeMap::new();
        let mut dirs = BTreeSet::new();
        for (module, path) in &files {
            match watch_key(path) {
                Ok((dir, key)) => {
                    dirs.insert(dir);
                    by_path.entry(key).or_default().insert(module.clone());
                }
                Err(err) => tracing::warn!(module, file = %path.display(), "cannot watch the module file: {err:#}"),
            }
        }
        if dirs.is_empty() {
            return Watched { files, by_path, _watcher: None };
        }
        let wanted: BTreeSet<PathBuf> = by_path.keys().cloned().collect();
        let watcher = notify::recommended_watcher(move |event: notify::Result<Event>| match event {
            Ok(event) if changes_content(&event.kind) => {
                for path in event.paths.into_iter().filter(|p| wanted.contains(p)) {
                    if tx.try_send(path).is_err() {
                        tracing::warn!("a module file change was dropped: the reload task is behind or gone");
                    }
                }
            }
            Ok(_) => {}
            Err(err) => tracing::warn!("watching the route module files: {err}"),
        });
        let mut watcher = match watcher {
            Ok(watcher) => watcher,
            Err(err) => {
                tracing::warn!("cannot watch the route module files (reload with SIGHUP or the MI): {err}");
                return Watched { files, by_path, _watcher: None };
            }
        };
        for dir in &dirs {
            match watcher.watch(dir, RecursiveMode::NonRecursive) {
                Ok(()) => tracing::info!(dir = %dir.display(), "watching route module files"),
                Err(err) => tracing::warn!(dir = %dir.display(), "cannot watch the directory: {err}"),
            }
        }
        Watched { files, by_path, _watcher: Some(watcher) }
    }

    /// The modules whose files are among `paths`, each once.
    fn modules_for(&self, paths: &[PathBuf]) -> BTreeSet<String> {
        paths.iter().filter_map(|p| self.by_path.get(p)).flatten().cloned().collect()
    }
}
/// The directory to watch for `file`, and the path notify will report for
/// it: both with the directory canonical (it must exist; the file need not).
fn watch_key(file: &Path) -> anyhow::Result<(PathBuf, PathBuf)> {
    let name = file.file_name().ok_or_else(|| anyhow::anyhow!("no file name"))?;
    let dir = match file.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let dir = std::fs::canonicalize(dir).map_err(|e| anyhow::anyhow!("directory {}: {e}", dir.display()))?;
    let key = dir.join(name);
    Ok((dir, key))
}
