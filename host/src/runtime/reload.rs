//! The module table and reloading it: which module serves what (the main
//! route, and event-route modules by name), make-before-break swaps, and the
//! [`Reloader`] that every reload path goes through (SIGHUP, MI
//! `reload_routes`, the file watch of `watch.rs`): it re-reads `[routes]`
//! from the config file, applies it, and counts `routes:reloads` and
//! `routes:reload_failures`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use super::Runtime;
use super::modules::{self, LoadedRoute, MAIN, RouteSet, RouteSource};

/// What a reload applies: the `[routes]` table as re-read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoutesUpdate {
    pub routes: RouteSet,
    /// `[routes.vars]`.
    pub vars: BTreeMap<String, String>,
    /// `[routes] watch`: reload a module when its file changes.
    pub watch: bool,
}

impl Runtime {
    /// The main module: the one serving new requests.
    pub fn current(&self) -> Arc<LoadedRoute> {
        self.inner.current.load_full()
    }

    /// Module `name` of the table ([`MAIN`] or an event route's), if loaded.
    pub fn module(&self, name: &str) -> Option<Arc<LoadedRoute>> {
        if name == MAIN { Some(self.current()) } else { self.inner.named.load().get(name).cloned() }
    }

    /// Every loaded module, the main one first.
    pub fn modules(&self) -> Vec<Arc<LoadedRoute>> {
        let mut all = vec![self.current()];
        all.extend(self.inner.named.load().values().cloned());
        all
    }

    /// The module a `route:NAME` event runs in: `NAME`'s when one is
    /// loaded, else the main one.
    pub(super) fn event_module(&self, route: &str) -> Arc<LoadedRoute> {
        self.inner.named.load().get(route).cloned().unwrap_or_else(|| self.current())
    }

    /// Whether `route` is still the module its name serves (no reload has
    /// replaced or dropped it since).
    pub(super) fn is_serving(&self, route: &Arc<LoadedRoute>) -> bool {
        self.module(&route.module).is_some_and(|serving| Arc::ptr_eq(&serving, route))
    }

    /// `[routes.vars]` as routes see them now.
    pub fn vars(&self) -> Arc<BTreeMap<String, String>> {
        self.inner.services.vars.load_full()
    }

    /// Make-before-break reload of the main module alone, from `source`
    /// (the event-route modules and `[routes.vars]` stay). Invocations
    /// already running finish on the module they started with. On error the
    /// old module keeps serving.
    pub async fn reload(&self, source: RouteSource) -> anyhow::Result<Arc<LoadedRoute>> {
        let loaded = self.swap_in(vec![(MAIN.to_string(), source)], None, None).await?;
        loaded.into_iter().next().ok_or_else(|| anyhow::anyhow!("the main module was not reloaded"))
    }

    /// Applies a re-read `[routes]`: with `only`, reloads that module alone
    /// (it must be in `update`); without, reloads every module of `update`
    /// and drops the event-route modules it no longer names. `[routes.vars]`
    /// is replaced either way. All or nothing: every module is loaded and
    /// checked before any is swapped in. Returns the modules swapped in.
    pub async fn apply(&self, update: RoutesUpdate, only: Option<&str>) -> anyhow::Result<Vec<Arc<LoadedRoute>>> {
        let load = modules_to_load(&update.routes, only).map_err(|err| self.reload_refused(err))?;
        let keep = only.is_none().then(|| update.routes.named.keys().cloned().collect());
        self.swap_in(load, keep, Some(update.vars)).await
    }

    /// Loads `load` (name, source) and swaps the modules in together, with
    /// `vars`; `keep`, when given, is the event-route module names to keep
    /// (the others are dropped). Counts the reload or its refusal.
    async fn swap_in(
        &self,
        load: Vec<(String, RouteSource)>,
        keep: Option<BTreeSet<String>>,
        vars: Option<BTreeMap<String, String>>,
    ) -> anyhow::Result<Vec<Arc<LoadedRoute>>> {
        let _one_at_a_time = self.inner.reloading.lock().await;
        let mut prepared = Vec::with_capacity(load.len());
        for (name, source) in load {
            let inner = self.inner.clone();
            let loaded = tokio::task::spawn_blocking(move || {
                modules::prepare(&inner.engine, &inner.linker, &name, &source, inner.cache.as_ref())
            })
            .await
            .map_err(anyhow::Error::from)
            .and_then(|loaded| loaded);
            let checked = match loaded {
                Ok(loaded) => self.smoke_test(&loaded).await.map(|()| loaded),
                Err(err) => Err(err),
            };
            prepared.push(checked.map_err(|err| self.reload_refused(err))?);
        }
        // Every module loaded and instantiated: swap them in.
        let mut swapped = Vec::with_capacity(prepared.len());
        {
            let mut generations = self.inner.generations.lock().unwrap_or_else(|p| p.into_inner());
            for mut loaded in prepared {
                let generation = generations.entry(loaded.module.clone()).or_insert(0);
                *generation += 1;
                loaded.generation = *generation;
                swapped.push(Arc::new(loaded));
            }
        }
        if let Some(vars) = vars {
            self.inner.services.vars.store(Arc::new(vars));
        }
        let mut named = BTreeMap::clone(&self.inner.named.load());
        let mut replaced = Vec::new();
        for loaded in &swapped {
            if &*loaded.module == MAIN {
                replaced.push(self.inner.current.swap(loaded.clone()));
            } else if let Some(old) = named.insert(loaded.module.clone(), loaded.clone()) {
                replaced.push(old);
            }
        }
        if let Some(keep) = keep {
            named.retain(|name, old| {
                let kept = keep.contains(&**name);
                if !kept {
                    tracing::info!(module = %name, "route module dropped from [routes.modules]; its events go to the main module");
                    replaced.push(old.clone());
                }
                kept
            });
        }
        self.inner.named.store(Arc::new(named));
        for old in replaced {
            old.warm.clear();
        }
        self.inner.stats.reloads.fetch_add(1, Ordering::Relaxed);
        for loaded in &swapped {
            tracing::info!(
                module = %loaded.module,
                source = %loaded.name,
                generation = loaded.generation,
                compiled = ?loaded.compiled,
                "route module loaded"
            );
        }
        Ok(swapped)
    }
}

impl Runtime {
    /// Counts a refused reload in `routes:reload_failures`, whatever refused
    /// it (a module that does not load, a name not in the table, a config
    /// file that does not parse), and hands the reason on.
    pub(super) fn reload_refused(&self, err: anyhow::Error) -> anyhow::Error {
        self.inner.stats.reload_failures.fetch_add(1, Ordering::Relaxed);
        err
    }
}

/// The (name, source) pairs a reload of `only` (or of everything) loads.
fn modules_to_load(routes: &RouteSet, only: Option<&str>) -> anyhow::Result<Vec<(String, RouteSource)>> {
    routes.validate()?;
    Ok(match only {
        Some(name) => {
            let Some(source) = routes.get(name) else {
                let known: Vec<&str> = routes.iter().map(|(name, _)| name).collect();
                anyhow::bail!("no route module named {name:?} (configured: {})", known.join(", "));
            };
            vec![(name.to_string(), source.clone())]
        }
        None => routes.iter().map(|(name, source)| (name.to_string(), source.clone())).collect(),
    })
}

/// Reads the `[routes]` table a reload applies (the server re-reads its
/// config file). Blocking: it is run off the async workers.
pub type ReadRoutes = Box<dyn Fn() -> anyhow::Result<RoutesUpdate> + Send + Sync>;

/// Every reload path's way in (SIGHUP, MI `reload_routes`, the file watch):
/// re-reads `[routes]`, applies it to the runtime, logs the outcome with its
/// cause and counts a refused config as a reload failure. Cheap to clone.
#[derive(Clone)]
pub struct Reloader {
    inner: Arc<ReloaderInner>,
}

struct ReloaderInner {
    runtime: Runtime,
    read: ReadRoutes,
    /// The `[routes]` the runtime serves now (the watch follows its files).
    applied: Mutex<RoutesUpdate>,
    /// Bumped whenever `applied` changes, so the watch can follow.
    changed: tokio::sync::watch::Sender<u64>,
}

impl Reloader {
    /// A reloader for `runtime`, which serves `applied` now; `read`
    /// re-reads `[routes]` for each reload.
    pub fn new(runtime: Runtime, applied: RoutesUpdate, read: ReadRoutes) -> Reloader {
        let (changed, _) = tokio::sync::watch::channel(0);
        Reloader { inner: Arc::new(ReloaderInner { runtime, read, applied: Mutex::new(applied), changed }) }
    }

    pub fn runtime(&self) -> &Runtime {
        &self.inner.runtime
    }

    /// Re-reads `[routes]` and reloads module `only` ([`MAIN`] or an event
    /// route's) or, without it, every module. `cause` names the path in the
    /// logs ("SIGHUP", "MI", "file watch"). On error nothing changed: the
    /// modules and vars that served keep serving, and the error is the reason.
    pub async fn reload(&self, only: Option<&str>, cause: &str) -> anyhow::Result<Vec<Arc<LoadedRoute>>> {
        let result = self.reread_and_apply(only).await;
        match &result {
            Ok(loaded) => {
                let summary: Vec<String> = loaded.iter().map(|m| format!("{} #{}", m.module, m.generation)).collect();
                tracing::info!(cause, modules = %summary.join(", "), "routes reloaded");
            }
            Err(err) => tracing::error!(cause, "route reload refused, the old modules keep serving: {err:#}"),
        }
        result
    }

    async fn reread_and_apply(&self, only: Option<&str>) -> anyhow::Result<Vec<Arc<LoadedRoute>>> {
        let inner = self.inner.clone();
        let update = match tokio::task::spawn_blocking(move || (inner.read)()).await {
            Ok(Ok(update)) => update,
            Ok(Err(err)) => return Err(self.refused(err.context("the config file was refused"))),
            Err(join) => return Err(self.refused(anyhow::Error::from(join))),
        };
        let loaded = self.inner.runtime.apply(update.clone(), only).await?;
        let mut applied = self.inner.applied.lock().unwrap_or_else(|p| p.into_inner());
        match only {
            None => *applied = update,
            Some(name) => {
                applied.vars = update.vars;
                applied.watch = update.watch;
                if let Some(source) = update.routes.get(name).cloned() {
                    match name {
                        MAIN => applied.routes.main = source,
                        _ => drop(applied.routes.named.insert(name.to_string(), source)),
                    }
                }
            }
        }
        drop(applied);
        self.inner.changed.send_modify(|n| *n += 1);
        Ok(loaded)
    }

    fn refused(&self, err: anyhow::Error) -> anyhow::Error {
        self.inner.runtime.reload_refused(err)
    }

    /// The module files to watch, by module name: none when `[routes]
    /// watch` is off (the embedded route has no file).
    pub fn watched_files(&self) -> Vec<(String, PathBuf)> {
        let applied = self.inner.applied.lock().unwrap_or_else(|p| p.into_inner());
        if !applied.watch {
            return Vec::new();
        }
        applied
            .routes
            .iter()
            .filter_map(|(name, source)| source.path().map(|path| (name.to_string(), path.to_path_buf())))
            .collect()
    }

    /// Changes each time a reload changed what is served.
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.changed.subscribe()
    }
}
