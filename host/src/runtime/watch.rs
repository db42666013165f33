//! The file watch (`[routes] watch`): a module file that changes is
//! reloaded, on its own, through the [`Reloader`].
//!
//! Each module's parent directory is watched, not the file itself: editors
//! and deploy tools replace a file by writing a new one and renaming it over
//! the old, which a watch on the old file's inode would never see. Events
//! are debounced (a burst of writes within [`DEBOUNCE`] is one change) on
//! notify's own thread, which hands the changed paths to an async task
//! through a bounded channel without ever blocking; the task reloads under
//! the server's [`Shutdown`]. After every reload the set of watched files is
//! read again, so a `[routes]` that names other files is followed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::RecursiveMode;
use notify_debouncer_mini::{DebounceEventResult, DebouncedEventKind, Debouncer, new_debouncer};
use tokio::sync::mpsc;

use super::reload::Reloader;
use crate::shutdown::Shutdown;

/// Writes closer together than this are one change.
pub const DEBOUNCE: Duration = Duration::from_millis(300);

/// Batches of changed paths waiting for the reload task. A full queue drops
/// the batch (and logs it): the task is behind, reloading anyway.
const QUEUE: usize = 16;

/// Watches the module files of `reloader`, reloading under `shutdown`.
/// Returns once the directories are watched (a change from then on is
/// seen); one that cannot be watched is logged and the others still are.
pub fn watch_modules(reloader: Reloader, shutdown: &Shutdown) {
    let stop = shutdown.clone();
    let mut changes = reloader.changes();
    let (tx, mut rx) = mpsc::channel::<Vec<PathBuf>>(QUEUE);
    let mut watched = Watched::start(&reloader, tx.clone());
    shutdown.spawn(async move {
        loop {
            tokio::select! {
                () = stop.signalled() => return,
                Some(paths) = rx.recv() => {
                    for module in watched.modules_for(&paths) {
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

/// The files being watched and the watcher that watches them (dropping it
/// stops notify's threads).
struct Watched {
    files: Vec<(String, PathBuf)>,
    /// Path as notify reports it (canonical directory + file name) -> modules.
    by_path: BTreeMap<PathBuf, BTreeSet<String>>,
    _debouncer: Option<Debouncer<notify::RecommendedWatcher>>,
}

impl Watched {
    fn start(reloader: &Reloader, tx: mpsc::Sender<Vec<PathBuf>>) -> Watched {
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
            return Watched { files, by_path, _debouncer: None };
        }
        let debouncer = new_debouncer(DEBOUNCE, move |result: DebounceEventResult| match result {
            Ok(events) => {
                let paths: Vec<PathBuf> =
                    events.into_iter().filter(|e| e.kind == DebouncedEventKind::Any).map(|e| e.path).collect();
                if !paths.is_empty() && tx.try_send(paths).is_err() {
                    tracing::warn!("module file changes dropped: the reload task is behind or gone");
                }
            }
            Err(err) => tracing::warn!("watching the route module files: {err}"),
        });
        let mut debouncer = match debouncer {
            Ok(debouncer) => debouncer,
            Err(err) => {
                tracing::warn!("cannot watch the route module files (reload with SIGHUP or the MI): {err}");
                return Watched { files, by_path, _debouncer: None };
            }
        };
        for dir in &dirs {
            match debouncer.watcher().watch(dir, RecursiveMode::NonRecursive) {
                Ok(()) => tracing::info!(dir = %dir.display(), "watching route module files"),
                Err(err) => tracing::warn!(dir = %dir.display(), "cannot watch the directory: {err}"),
            }
        }
        Watched { files, by_path, _debouncer: Some(debouncer) }
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
