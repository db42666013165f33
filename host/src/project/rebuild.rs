//! Rebuilding a project when its sources change (`sipbox run` in a project):
//! the directories the manifest's `watch` globs can match in are watched
//! (not the whole root, so `target/` costs nothing), a change to a matching
//! file is debounced, then the build runs. A successful build replaces the
//! `.wasm`, which the server's own module file watch (`runtime/watch.rs`)
//! sees and reloads; a failed one is logged and the running version keeps
//! serving. Changes made while a build runs start one more build after it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use notify::event::{AccessKind, AccessMode, ModifyKind};
use notify::{Event, EventKind, RecursiveMode, Watcher as _};
use tokio::sync::mpsc;

use super::{Project, glob_base, glob_set};

/// A build starts once no source changed for this long (an editor's save
/// is several events; a "save all" several files).
pub const DEBOUNCE: Duration = Duration::from_millis(300);

/// The watch and its rebuild task; dropping it stops both.
pub struct Rebuilds {
    _watcher: notify::RecommendedWatcher,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Rebuilds {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts watching `project`'s sources and rebuilding it on a change. Call
/// it inside a tokio runtime. Returns once the directories are watched; a
/// directory that does not exist (yet) is skipped with a warning.
pub fn rebuild_on_change(project: Project) -> anyhow::Result<Rebuilds> {
    let globs = glob_set(&project.manifest.watch)?;
    // A pending change is one token: more changes before the build starts
    // add nothing, so a full channel drops them.
    let (tx, mut rx) = mpsc::channel::<()>(1);
    let root = project.root.clone();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<Event>| match event {
        Ok(event) if changes_content(&event.kind) => {
            let matched = event.paths.iter().any(|path| path.strip_prefix(&root).is_ok_and(|rel| globs.is_match(rel)));
            if matched {
                let _ = tx.try_send(());
            }
        }
        Ok(_) => {}
        Err(err) => tracing::warn!("watching the route's sources: {err}"),
    })?;
    // Each glob's base directory, recursive if any glob needs it.
    let mut dirs: BTreeMap<PathBuf, bool> = BTreeMap::new();
    for pattern in &project.manifest.watch {
        let (base, recursive) = glob_base(pattern);
        *dirs.entry(project.root.join(base)).or_default() |= recursive;
    }
    for (dir, recursive) in &dirs {
        let mode = if *recursive { RecursiveMode::Recursive } else { RecursiveMode::NonRecursive };
        match watcher.watch(dir, mode) {
            Ok(()) => tracing::debug!(dir = %dir.display(), "watching route sources"),
            Err(err) => tracing::warn!(dir = %dir.display(), "cannot watch the route's sources there: {err}"),
        }
    }
    tracing::info!(project = %project.root.display(), watch = ?project.manifest.watch, "rebuilding the route when its sources change");
    let project = Arc::new(project);
    let task = tokio::spawn(async move {
        while rx.recv().await.is_some() {
            // Trailing debounce: build once the changes have stopped.
            while let Ok(Some(())) = tokio::time::timeout(DEBOUNCE, rx.recv()).await {}
            tracing::info!(route = %project.manifest.name, "sources changed: rebuilding");
            let building = project.clone();
            match tokio::task::spawn_blocking(move || building.build()).await {
                Ok(Ok(wasm)) => {
                    tracing::info!(module = %wasm.display(), "rebuilt; the module file watch reloads it")
                }
                Ok(Err(err)) => tracing::warn!("the rebuild failed, the running version keeps serving: {err:#}"),
                Err(err) => tracing::warn!("the rebuild did not finish: {err}"),
            }
        }
    });
    Ok(Rebuilds { _watcher: watcher, task })
}

/// Whether `kind` can have changed a file's content: written, created,
/// renamed or removed (opening, reading and metadata changes cannot).
fn changes_content(kind: &EventKind) -> bool {
    match kind {
        EventKind::Create(_) | EventKind::Remove(_) => true,
        EventKind::Modify(ModifyKind::Metadata(_)) => false,
        EventKind::Modify(_) => true,
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) | EventKind::Any | EventKind::Other => false,
    }
}
