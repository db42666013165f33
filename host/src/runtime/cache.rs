//! The on-disk cache of compiled route modules (`[routes] cache`,
//! `cache_dir`): a component compiled once is kept as wasmtime's native
//! code, so a restart, or a reload of a module whose bytes did not change,
//! loads it in milliseconds instead of compiling it again.
//!
//! An entry is named `<sha256 of the .wasm>-<engine key>.cwasm`, where the
//! engine key is a digest of [`Engine::precompile_compatibility_hash`]
//! (wasmtime's version, the target, and every setting that changes the code,
//! such as `[limits] memory_mb`): another engine's entries are never looked
//! at. Its content is the SHA-256 of the compiled artifact followed by the
//! artifact, written to a temporary file and renamed into place, so a reader
//! sees a whole entry or none.
//!
//! Loading compiled code is `unsafe` (wasmtime runs it as it is), so an entry
//! is trusted only when it is in a directory that only this user can write,
//! is owned by this user, and its digest matches; anything else is ignored,
//! recompiled and rewritten. Entries are never evicted: one per module
//! version, each the size of the module's native code (a few MiB at most).

use std::hash::Hasher;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::Context;
use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// Length of the digest that heads an entry.
const DIGEST_LEN: usize = 32;

/// A cache directory this process may trust.
#[derive(Clone, Debug)]
pub struct CompileCache {
    dir: PathBuf,
}

/// How a component was obtained, for the load's log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compiled {
    /// Compiled now (no cache, or no usable entry).
    Fresh,
    /// Loaded from the cache.
    Cached,
}

impl CompileCache {
    /// `$XDG_CACHE_HOME/sipbox`, else `~/.cache/sipbox`; `None` when neither
    /// variable is set.
    pub fn default_dir() -> Option<PathBuf> {
        let absolute = |v: std::ffi::OsString| Some(PathBuf::from(v)).filter(|p| p.is_absolute());
        std::env::var_os("XDG_CACHE_HOME")
            .and_then(absolute)
            .or_else(|| std::env::var_os("HOME").and_then(absolute).map(|home| home.join(".cache")))
            .map(|base| base.join("sipbox"))
    }

    /// Opens (creating it, mode 0700) the cache directory `dir`, refusing one
    /// that another user owns or that others may write to: entries from
    /// there could be anyone's code.
    pub fn open(dir: &Path) -> anyhow::Result<CompileCache> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("cannot create the compile cache directory {}", dir.display()))?;
        let meta = std::fs::metadata(dir).with_context(|| format!("cannot read {}", dir.display()))?;
        let uid = own_uid()?;
        anyhow::ensure!(
            meta.uid() == uid,
            "compile cache directory {} belongs to uid {}, not to this user ({uid})",
            dir.display(),
            meta.uid()
        );
        anyhow::ensure!(
            meta.permissions().mode() & 0o022 == 0,
            "compile cache directory {} is writable by others (mode {:o}); chmod go-w it",
            dir.display(),
            meta.permissions().mode() & 0o777
        );
        Ok(CompileCache { dir: dir.to_path_buf() })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the entry for `wasm` compiled by `engine` lives.
    pub fn entry_path(&self, engine: &Engine, wasm: &[u8]) -> PathBuf {
        let source = hex(&Sha256::digest(wasm));
        let mut key = DigestHasher(Sha256::new());
        std::hash::Hash::hash(&engine.precompile_compatibility_hash(), &mut key);
        let engine_key = hex(&key.0.finalize()[..8]);
        self.dir.join(format!("{source}-{engine_key}.cwasm"))
    }

    /// The component for `wasm`: from its entry when there is a good one,
    /// else compiled and stored. A cache that cannot be written is logged
    /// and the compiled component returned all the same.
    pub fn load_or_compile(&self, engine: &Engine, wasm: &[u8], name: &str) -> anyhow::Result<(Component, Compiled)> {
        let path = self.entry_path(engine, wasm);
        match self.load(engine, &path) {
            Ok(Some(component)) => return Ok((component, Compiled::Cached)),
            Ok(None) => {}
            Err(err) => tracing::warn!(entry = %path.display(), "ignoring a bad compile cache entry: {err:#}"),
        }
        let artifact = engine
            .precompile_component(wasm)
            .map_err(|e| anyhow::anyhow!("route module {name} failed to compile: {e:#}"))?;
        // SAFETY: `artifact` was produced by this engine's
        // `precompile_component` just now.
        let component = unsafe { Component::deserialize(engine, &artifact) }
            .map_err(|e| anyhow::anyhow!("route module {name} failed to load after compiling: {e:#}"))?;
        if let Err(err) = self.store(&path, &artifact) {
            tracing::warn!(entry = %path.display(), "cannot write the compile cache: {err:#}");
        }
        Ok((component, Compiled::Fresh))
    }

    /// The entry at `path`: `None` when there is none; an error (and the
    /// entry ignored) when it is not one this process wrote intact.
    fn load(&self, engine: &Engine, path: &Path) -> anyhow::Result<Option<Component>> {
        let meta = match std::fs::symlink_metadata(path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).context("cannot stat it"),
        };
        anyhow::ensure!(meta.is_file(), "not a regular file");
        anyhow::ensure!(meta.uid() == own_uid()?, "owned by uid {}, not by this user", meta.uid());
        anyhow::ensure!(meta.permissions().mode() & 0o022 == 0, "writable by others");
        let bytes = std::fs::read(path).context("cannot read it")?;
        anyhow::ensure!(bytes.len() > DIGEST_LEN, "truncated ({} bytes)", bytes.len());
        let (digest, artifact) = bytes.split_at(DIGEST_LEN);
        anyhow::ensure!(Sha256::digest(artifact).as_slice() == digest, "its digest does not match (corrupt)");
        // SAFETY: the artifact is byte for byte what `store` wrote from this
        // engine family's `precompile_component` output (the digest matches,
        // and the directory and file are writable by this user only);
        // wasmtime itself refuses an artifact of another version or settings.
        let component = unsafe { Component::deserialize(engine, artifact) }
            .map_err(|e| anyhow::anyhow!("wasmtime refused it: {e:#}"))?;
        Ok(Some(component))
    }

    /// Writes an entry: a temporary file in the same directory, renamed
    /// into place, so a concurrent reader (another sipbox) never sees half.
    fn store(&self, path: &Path, artifact: &[u8]) -> anyhow::Result<()> {
        static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = self.dir.join(format!(".entry-{}-{seq}.tmp", std::process::id()));
        let written = (|| {
            use std::os::unix::fs::OpenOptionsExt;
            let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
            file.write_all(&Sha256::digest(artifact))?;
            file.write_all(artifact)?;
            file.sync_all()?;
            std::fs::rename(&tmp, path)
        })();
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written.with_context(|| format!("cannot write {}", tmp.display()))
    }
}

/// This process's user id: the owner of `/proc/self` (no libc here).
fn own_uid() -> anyhow::Result<u32> {
    Ok(std::fs::metadata("/proc/self").context("cannot find this process's uid in /proc/self")?.uid())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Feeds a `Hash` value into SHA-256, so the engine key is stable across
/// processes (std's hashers are not meant to be).
struct DigestHasher(Sha256);

impl Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        // Only `write` is used: the digest is taken with `finalize`.
        0
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}
