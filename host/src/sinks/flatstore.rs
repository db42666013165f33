//! `flatstore:/path/file` (OpenSIPS event_flatstore): one text line per
//! event, `EVENT<d>v1<d>v2...\n` — the event name (unless
//! `flatstore_suppress_event_name`), then each parameter value (names are
//! not written) preceded by the delimiter; ints in decimal, NULL and empty
//! strings as nothing; in string values every occurrence of the delimiter's
//! first character becomes a space (as OpenSIPS). Unlike OpenSIPS, which
//! writes values raw, a line cannot be broken or forged: in the event name
//! and string values a backslash is written `\\`, CR `\r`, LF `\n`, TAB
//! `\t`, any other ASCII control character `\xHH` and other control or
//! line-separator characters `\u{HHHH}`. So one event is always one line.
//!
//! Files are written only under `[events] flatstore_dirs` (default none:
//! every `flatstore:` subscription is refused, naming the setting). The path
//! must be absolute without `..`; its directory is canonicalised and must lie
//! under a configured one, when subscribing and again each time the file is
//! opened; the file is opened with `O_NOFOLLOW`, so a symlink planted at the
//! path is refused, not followed.
//!
//! Subscriptions to the same path share one file, written by one dedicated
//! thread (file I/O never runs on an async worker), which lives as long as
//! some subscriber of that path does. Rotation:
//! - [`Flatstore::rotate`] (MI `event_flatstore:rotate`): the writer reopens
//!   the path before its next write, for logrotate (`mv` then rotate);
//! - by size (`flatstore_max_size`): once a write brings the file to that
//!   size it is renamed `<path>.<unix seconds>` and a fresh file is opened.
//!
//! Both raise `E_FLATSTORE_ROTATION` {`timestamp` (a string, as OpenSIPS
//! sends it), `reason` (`mi`/`size`), `filename`, `old_filename`}.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use tokio::sync::{mpsc, oneshot};

use crate::events::{DeliverFut, E_FLATSTORE_ROTATION, Event, EventError, Params, Sink, SinkContext, SinkError, Value};

/// Lines waiting for one file's writer thread.
const WRITER_QUEUE: usize = 256;

/// The flatstore files of one bus, shared by its `flatstore:` subscribers (one
/// writer per path) and by `evi_flat_rotate`, which reopens them. Cheap clone.
#[derive(Clone, Default)]
pub struct Flatstore {
    files: Arc<FlatFiles>,
}

impl Flatstore {
    /// Parses the part of a `flatstore:` socket after the prefix.
    pub(crate) fn parse(&self, rest: &str, ctx: &SinkContext) -> Result<Arc<dyn Sink>, EventError> {
        if rest.trim().is_empty() {
            return Err(EventError::BadSocket("flatstore: needs a file path".into()));
        }
        if rest.bytes().any(|b| b == 0 || b == b'\n') {
            return Err(EventError::BadSocket(format!("flatstore:{rest}: bad character in path")));
        }
        Ok(Arc::new(FlatSink {
            socket: format!("flatstore:{rest}"),
            path: rest.to_owned(),
            ctx: ctx.clone(),
            files: self.files.clone(),
            file: OnceLock::new(),
        }))
    }

    /// MI `event_flatstore:rotate` / `evi_flat_rotate`: the files for `path`
    /// (with or without its `flatstore:` prefix; or all of them) are reopened
    /// before their next write, and `E_FLATSTORE_ROTATION` (reason `mi`) is
    /// raised for each. Returns how many files that was.
    ///
    /// # Errors
    /// [`EventError::FileNotFound`] when `path` is given and no flatstore
    /// subscriber has written to it.
    pub fn rotate(&self, path: Option<&str>) -> Result<usize, EventError> {
        self.files.rotate(path)
    }
}

/// Appends `s`, escaping what could break or forge a line (module docs).
fn push_escaped(out: &mut String, s: &str) {
    use std::fmt::Write as _;
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_ascii_control() => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}') => {
                let _ = write!(out, "\\u{{{:04x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
}

/// The text line for an event (see the module docs).
pub(crate) fn line(event: &Event, delimiter: &str, suppress_name: bool) -> Vec<u8> {
    let mut out = String::with_capacity(64);
    if !suppress_name {
        push_escaped(&mut out, &event.name);
    }
    let first = delimiter.chars().next();
    for (_, value) in &event.params.0 {
        if !suppress_name || !out.is_empty() {
            out.push_str(delimiter);
        }
        match value {
            Value::Int(n) => out.push_str(&n.to_string()),
            Value::Str(s) => match first {
                Some(d) if s.contains(d) => {
                    push_escaped(&mut out, &s.chars().map(|c| if c == d { ' ' } else { c }).collect::<String>())
                }
                _ => push_escaped(&mut out, s),
            },
            Value::Null => {}
        }
    }
    out.push('\n');
    out.into_bytes()
}

struct FlatSink {
    socket: String,
    path: String,
    ctx: SinkContext,
    files: Arc<FlatFiles>,
    /// The shared file, attached on first delivery.
    file: OnceLock<Arc<FlatFile>>,
}

impl FlatSink {
    async fn write(&self, event: &Event) -> Result<(), SinkError> {
        let file = match self.file.get() {
            Some(f) => f.clone(),
            None => {
                let f = self.files.attach(&self.path, &self.ctx)?;
                self.file.get_or_init(|| f).clone()
            }
        };
        let cfg = self.ctx.config();
        let bytes = line(event, &cfg.flatstore_delimiter, cfg.flatstore_suppress_event_name);
        let (done_tx, done_rx) = oneshot::channel();
        file.tx
            .send((bytes, done_tx))
            .await
            .map_err(|_| SinkError::Other(format!("flatstore writer for {} stopped", self.path)))?;
        done_rx
            .await
            .map_err(|_| SinkError::Other(format!("flatstore writer for {} stopped", self.path)))?
            .map_err(SinkError::Io)
    }
}

impl Sink for FlatSink {
    fn socket(&self) -> &str {
        &self.socket
    }

    fn deliver<'a>(&'a self, event: &'a Event) -> DeliverFut<'a> {
        Box::pin(self.write(event))
    }

    /// The path must be under `flatstore_dirs` (module docs); then, as
    /// OpenSIPS `flat_parse`, the directory must exist and the path must not
    /// be a directory. (A few `stat`s, once per new subscription.)
    fn check(&self) -> Result<(), EventError> {
        let path = Path::new(&self.path);
        self.ctx
            .destinations()
            .check_flatstore(path)
            .map_err(|e| EventError::DestinationRefused(format!("{}: {e}", self.socket)))?;
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        if !dir.is_dir() {
            return Err(EventError::Refused(format!("{}: no directory {}", self.socket, dir.display())));
        }
        if path.is_dir() {
            return Err(EventError::Refused(format!("{}: path is a directory", self.socket)));
        }
        Ok(())
    }
}

type Job = (Vec<u8>, oneshot::Sender<std::io::Result<()>>);

/// One open flatstore path: the queue into its writer thread.
struct FlatFile {
    tx: mpsc::Sender<Job>,
    /// Bumped by MI rotate; the writer reopens when it differs from its own.
    version: Arc<AtomicU64>,
    /// The bus of the subscriber that opened it, which MI rotation raises on.
    ctx: SinkContext,
}

/// The flatstore files in use, by path (shared by every subscriber of a path).
#[derive(Default)]
struct FlatFiles {
    files: Mutex<HashMap<String, Weak<FlatFile>>>,
}

impl FlatFiles {
    /// The file for `path`, starting its writer thread if no one writes it yet.
    fn attach(&self, path: &str, ctx: &SinkContext) -> Result<Arc<FlatFile>, SinkError> {
        let mut files = self.files.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = files.get(path).and_then(Weak::upgrade) {
            return Ok(f);
        }
        files.retain(|_, w| w.strong_count() > 0);
        let cfg = ctx.config();
        let mode = cfg.file_mode().map_err(|e| SinkError::Other(e.to_string()))?;
        let (tx, rx) = mpsc::channel(WRITER_QUEUE);
        let version = Arc::new(AtomicU64::new(0));
        let writer = Writer {
            path: path.to_owned(),
            mode,
            max_size: cfg.flatstore_max_size,
            version: version.clone(),
            ctx: ctx.clone(),
            file: None,
            size: 0,
            seen_version: 0,
        };
        std::thread::Builder::new().name("flatstore".into()).spawn(move || writer.run(rx)).map_err(SinkError::Io)?;
        let file = Arc::new(FlatFile { tx, version, ctx: ctx.clone() });
        files.insert(path.to_owned(), Arc::downgrade(&file));
        Ok(file)
    }

    /// Makes the writers of `path` (or of every open file) reopen before
    /// their next write; raises `E_FLATSTORE_ROTATION` (reason `mi`) for
    /// each. Returns how many files were rotated.
    ///
    /// # Errors
    /// [`EventError::FileNotFound`] when `path` is given and no flatstore
    /// subscriber has written to it.
    fn rotate(&self, path: Option<&str>) -> Result<usize, EventError> {
        let path = path.map(|p| p.strip_prefix("flatstore:").unwrap_or(p));
        let rotated: Vec<(String, Arc<FlatFile>)> = {
            let files = self.files.lock().unwrap_or_else(|p| p.into_inner());
            files
                .iter()
                .filter(|(p, _)| path.is_none_or(|want| want == p.as_str()))
                .filter_map(|(p, w)| w.upgrade().map(|f| (p.clone(), f)))
                .inspect(|(_, f)| {
                    f.version.fetch_add(1, Ordering::Release);
                })
                .collect()
        };
        if let (Some(p), true) = (path, rotated.is_empty()) {
            return Err(EventError::FileNotFound(p.to_owned()));
        }
        for (p, f) in &rotated {
            raise_rotation(&f.ctx, "mi", p, p);
        }
        Ok(rotated.len())
    }
}

fn raise_rotation(ctx: &SinkContext, reason: &str, filename: &str, old_filename: &str) {
    let ts = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let params = Params::new()
        .with("timestamp", ts.to_string())
        .with("reason", reason)
        .with("filename", filename)
        .with("old_filename", old_filename);
    ctx.raise(Event::new(E_FLATSTORE_ROTATION, params));
}

/// The thread that owns one open file.
struct Writer {
    path: String,
    mode: u32,
    max_size: u64,
    version: Arc<AtomicU64>,
    ctx: SinkContext,
    file: Option<File>,
    size: u64,
    seen_version: u64,
}

impl Writer {
    /// Writes lines until every sender (every subscriber of the path) is gone.
    fn run(mut self, mut rx: mpsc::Receiver<Job>) {
        while let Some((line, done)) = rx.blocking_recv() {
            let version = self.version.load(Ordering::Acquire);
            if version != self.seen_version {
                self.seen_version = version;
                self.file = None;
            }
            let result = self.write(&line);
            if let Err(e) = &result {
                tracing::warn!(path = %self.path, error = %e, "flatstore write failed");
                self.file = None;
            }
            let _ = done.send(result);
            if self.max_size > 0 && self.size >= self.max_size && self.file.is_some() {
                self.rotate_by_size();
            }
        }
    }

    fn write(&mut self, line: &[u8]) -> std::io::Result<()> {
        let file = match &mut self.file {
            Some(f) => f,
            slot @ None => {
                // Checked again at each open: the directory may have been
                // swapped for a symlink since the subscription was made.
                self.ctx.destinations().check_flatstore(Path::new(&self.path)).map_err(std::io::Error::other)?;
                let (f, size) = open(&self.path, self.mode)?;
                self.size = size;
                slot.insert(f)
            }
        };
        file.write_all(line)?;
        self.size += line.len() as u64;
        Ok(())
    }

    fn rotate_by_size(&mut self) {
        self.file = None;
        let ts = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let mut target = format!("{}.{ts}", self.path);
        let mut n = 1;
        while Path::new(&target).exists() {
            target = format!("{}.{ts}.{n}", self.path);
            n += 1;
        }
        match std::fs::rename(&self.path, &target) {
            Ok(()) => {
                self.size = 0;
                tracing::info!(path = %self.path, rotated_to = %target, "flatstore file rotated by size");
                raise_rotation(&self.ctx, "size", &self.path, &target);
            }
            Err(e) => tracing::warn!(path = %self.path, error = %e, "flatstore rotation failed"),
        }
    }
}

/// Opens for append, creating with `mode` (set explicitly, so the umask
/// does not change it), never through a symlink (`O_NOFOLLOW`). Returns the
/// file and its current size.
fn open(path: &str, mode: u32) -> std::io::Result<(File, u64)> {
    let existed = Path::new(path).exists();
    let file = OpenOptions::new().append(true).create(true).mode(mode).custom_flags(libc::O_NOFOLLOW).open(path)?;
    if !existed {
        file.set_permissions(std::fs::Permissions::from_mode(mode))?;
    }
    let size = file.metadata()?.len();
    Ok((file, size))
}
