//! Write-back persistence of bindings in an embedded redb database.
//!
//! No SIP thread touches the disk: each change becomes an [`Op`] on a
//! bounded channel, and one writer thread (a std thread: redb is blocking
//! I/O) commits whatever is queued in a single transaction, so a burst of
//! REGISTERs costs one fsync rather than one each (group commit). The
//! registrar's 200 OK waits, without blocking a thread, until the commit
//! that holds its change is durable ([`Persist::durable`]): the writer
//! publishes the sequence number of the last op each commit covered.
//!
//! # Overflow policy
//! When the channel is full (the disk is slower than the REGISTER rate for a
//! long stretch), the op is dropped and a "dirty" flag is set instead of
//! blocking the caller. The writer then rewrites the whole table from a
//! snapshot of the in-memory index (a resync) in its next transaction. Every
//! op carries a sequence number assigned under the index lock, and the
//! snapshot records the last one it includes, so queued ops the snapshot
//! already covers are skipped rather than replayed over it. Memory stays
//! bounded by [`QUEUE_CAPACITY`]; the price is one full rewrite after an overflow.
//!
//! # Layout
//! Table `bindings`: key `(aor, contact uri)`, value the serde_json bytes of a
//! [`Binding`]. JSON keeps the file readable with generic tools and tolerant
//! of added fields.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use anyhow::Context as _;
use redb::{Database, TableDefinition};

use super::Binding;

/// Pending ops the channel holds before the overflow policy applies. A
/// binding op is ~300 bytes, so a full queue is about 1 MiB.
pub(crate) const QUEUE_CAPACITY: usize = 4096;

pub(crate) const BINDINGS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("bindings");

/// A snapshot of the index for a resync: every binding, and the sequence
/// number of the last op whose effect it includes.
pub(crate) type Snapshot = Box<dyn Fn() -> Option<(Vec<Binding>, u64)> + Send>;

enum Op {
    Put(u64, Binding),
    Delete(u64, String, String),
    Flush(SyncSender<Result<(), String>>),
    Shutdown,
}

/// The SIP-side handle: queue ops, flush, stop.
pub(crate) struct Persist {
    tx: SyncSender<Op>,
    dirty: Arc<AtomicBool>,
    /// Last sequence number handed out; callers hold the index lock, so the
    /// numbering follows the order of the changes themselves.
    seq: AtomicU64,
    /// The last sequence number whose op is committed (or covered by a
    /// committed resync).
    committed: Arc<tokio::sync::watch::Sender<u64>>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

/// Opens (or creates) the database, removes expired and unreadable records,
/// and returns the live bindings.
pub(crate) fn open(path: &Path, now: u64) -> anyhow::Result<(Database, Vec<Binding>)> {
    let db = Database::create(path).with_context(|| format!("opening location database {}", path.display()))?;
    let mut live = Vec::new();
    let txn = db.begin_write()?;
    {
        let mut table = txn.open_table(BINDINGS)?;
        table.retain(|(aor, contact), value| match serde_json::from_slice::<Binding>(value) {
            Ok(b) if b.expires_at > now => {
                live.push(b);
                true
            }
            Ok(_) => false,
            Err(err) => {
                tracing::warn!(aor, contact, %err, "dropping unreadable location record");
                false
            }
        })?;
    }
    txn.commit()?;
    Ok((db, live))
}

impl Persist {
    /// Starts the writer thread over an opened database.
    pub(crate) fn start(db: Database, snapshot: Snapshot) -> anyhow::Result<Persist> {
        let (tx, rx) = mpsc::sync_channel(QUEUE_CAPACITY);
        let dirty = Arc::new(AtomicBool::new(false));
        let committed = Arc::new(tokio::sync::watch::Sender::new(0));
        let writer = Writer { db, rx, dirty: dirty.clone(), snapshot, skip_through: 0, committed: committed.clone() };
        let handle = std::thread::Builder::new()
            .name("location-writer".into())
            .spawn(move || writer.run())
            .context("spawning the location writer thread")?;
        Ok(Persist { tx, dirty, seq: AtomicU64::new(0), committed, writer: Mutex::new(Some(handle)) })
    }

    /// Last sequence number handed out (read under the index lock by snapshots).
    pub(crate) fn seq(&self) -> u64 {
        self.seq.load(Ordering::SeqCst)
    }

    /// Queues an upsert of `binding`. Never blocks.
    pub(crate) fn put(&self, binding: Binding) {
        let seq = self.seq.fetch_add(1, Ordering::SeqCst) + 1;
        self.submit(Op::Put(seq, binding));
    }

    /// Queues the removal of `(aor, contact)`. Never blocks.
    pub(crate) fn delete(&self, aor: &str, contact: &str) {
        let seq = self.seq.fetch_add(1, Ordering::SeqCst) + 1;
        self.submit(Op::Delete(seq, aor.to_owned(), contact.to_owned()));
    }

    fn submit(&self, op: Op) {
        match self.tx.try_send(op) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                // See "Overflow policy" above.
                if !self.dirty.swap(true, Ordering::SeqCst) {
                    tracing::warn!("location write queue full; a full resync will follow");
                }
            }
            Err(TrySendError::Disconnected(_)) => {
                tracing::error!("location writer has stopped; change not persisted");
            }
        }
    }

    /// Completes when every op queued before the call is committed: what a
    /// REGISTER's 200 waits for. Never completes while commits fail (the
    /// caller bounds the wait).
    pub(crate) fn durable(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let target = self.seq();
        let mut committed = self.committed.subscribe();
        async move {
            let _ = committed.wait_for(|done| *done >= target).await;
        }
    }

    /// Blocks until everything queued before the call is committed.
    ///
    /// # Errors
    /// When the last commit failed or the writer has stopped.
    pub(crate) fn flush(&self) -> anyhow::Result<()> {
        let (reply_tx, reply_rx) = mpsc::sync_channel(1);
        self.tx.send(Op::Flush(reply_tx)).map_err(|_| anyhow::anyhow!("location writer has stopped"))?;
        match reply_rx.recv() {
            Ok(result) => result.map_err(|e| anyhow::anyhow!("persisting locations: {e}")),
            Err(_) => anyhow::bail!("location writer stopped before flushing"),
        }
    }

    /// Commits what is queued, stops the writer and waits for it (so the
    /// database file is closed when this returns). Idempotent.
    pub(crate) fn shutdown(&self) {
        let handle = match self.writer.lock() {
            Ok(mut guard) => guard.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        if let Some(handle) = handle {
            // A blocking send: the writer drains the queue, so this waits at
            // most for one batch commit.
            let _ = self.tx.send(Op::Shutdown);
            if handle.join().is_err() {
                tracing::error!("location writer thread panicked");
            }
        }
    }
}

struct Writer {
    db: Database,
    rx: Receiver<Op>,
    dirty: Arc<AtomicBool>,
    snapshot: Snapshot,
    /// Ops numbered up to here are already covered by the last resync.
    skip_through: u64,
    committed: Arc<tokio::sync::watch::Sender<u64>>,
}

impl Writer {
    fn run(mut self) {
        // `recv` fails only when every sender is gone: nothing more can come.
        while let Ok(first) = self.rx.recv() {
            let mut ops = Vec::new();
            let mut flushes = Vec::new();
            let mut shutdown = false;
            let mut next = Some(first);
            // Everything queued right now goes into one transaction; the
            // channel bound caps the batch.
            while let Some(op) = next {
                match op {
                    Op::Flush(reply) => flushes.push(reply),
                    Op::Shutdown => shutdown = true,
                    op => ops.push(op),
                }
                next = if ops.len() < QUEUE_CAPACITY { self.rx.try_recv().ok() } else { None };
            }
            // Read after draining: an overflow flagged later implies a full
            // queue, hence another batch, hence another look at the flag.
            let resync = self.dirty.swap(false, Ordering::SeqCst);
            let result = self.commit(resync, ops).map(|covered| {
                self.committed.send_modify(|done| *done = (*done).max(covered));
            });
            let result = result.map_err(|err| {
                let err = format!("{err:#}");
                tracing::error!(error = %err, "persisting locations failed; will resync");
                // Retry from a snapshot on the next batch (the next op or flush).
                self.dirty.store(true, Ordering::SeqCst);
                err
            });
            for reply in flushes {
                let _ = reply.send(result.clone());
            }
            if shutdown {
                break;
            }
        }
    }

    /// Commits `ops` (after a resync when `resync`); returns the highest
    /// sequence number now durable. An op dropped at overflow has a lower
    /// number than any queued after it, and the overflow set `dirty` before
    /// those were queued, so a batch that holds them resyncs: what it
    /// returns covers every op numbered up to it.
    fn commit(&mut self, resync: bool, ops: Vec<Op>) -> anyhow::Result<u64> {
        let txn = self.db.begin_write()?;
        let mut skip_through = self.skip_through;
        let mut covered = 0;
        {
            let mut table = txn.open_table(BINDINGS)?;
            // No snapshot means the index is gone (shutting down): apply the ops alone.
            if let Some((bindings, seq)) = resync.then(|| (self.snapshot)()).flatten() {
                table.retain(|_, _| false)?;
                for b in &bindings {
                    table.insert((b.aor.as_str(), b.contact.as_str()), serde_json::to_vec(b)?.as_slice())?;
                }
                tracing::info!(bindings = bindings.len(), "location database resynchronised");
                skip_through = seq;
            }
            for op in ops {
                if let Op::Put(seq, _) | Op::Delete(seq, ..) = &op {
                    covered = covered.max(*seq);
                }
                match op {
                    Op::Put(seq, b) if seq > skip_through => {
                        table.insert((b.aor.as_str(), b.contact.as_str()), serde_json::to_vec(&b)?.as_slice())?;
                    }
                    Op::Delete(seq, aor, contact) if seq > skip_through => {
                        table.remove((aor.as_str(), contact.as_str()))?;
                    }
                    _ => {}
                }
            }
        }
        txn.commit()?;
        self.skip_through = skip_through;
        Ok(covered.max(skip_through))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(aor: &str, contact: &str) -> Binding {
        Binding {
            aor: aor.into(),
            contact: contact.into(),
            q: None,
            expires_at: u64::MAX,
            call_id: "c".into(),
            cseq: 1,
            received: None,
            user_agent: None,
            last_modified: 0,
        }
    }

    fn contacts_on_disk(path: &Path, now: u64) -> Vec<String> {
        let (_db, live) = open(path, now).unwrap();
        let mut out: Vec<String> = live.into_iter().map(|b| b.contact).collect();
        out.sort();
        out
    }

    #[test]
    fn a_full_queue_marks_dirty_instead_of_blocking() {
        // No writer drains this queue, so a blocking send would hang the test.
        let (tx, _rx) = mpsc::sync_channel(QUEUE_CAPACITY);
        let p = Persist {
            tx,
            dirty: Arc::new(AtomicBool::new(false)),
            seq: AtomicU64::new(0),
            committed: Arc::new(tokio::sync::watch::Sender::new(0)),
            writer: Mutex::new(None),
        };
        for _ in 0..QUEUE_CAPACITY {
            p.put(binding("a", "sip:a@x"));
        }
        assert!(!p.dirty.load(Ordering::SeqCst));
        p.delete("a", "sip:a@x");
        assert!(p.dirty.load(Ordering::SeqCst));
        assert_eq!(p.seq(), QUEUE_CAPACITY as u64 + 1, "dropped ops still consume a sequence number");
    }

    #[test]
    fn resync_rewrites_from_the_snapshot_and_skips_covered_ops() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.redb");
        let (db, live) = open(&path, 0).unwrap();
        assert!(live.is_empty());
        let snapshot_seq = Arc::new(AtomicU64::new(0));
        let seq = snapshot_seq.clone();
        let snapshot: Snapshot = Box::new(move || {
            Some((vec![binding("a", "sip:a@1"), binding("b", "sip:b@1")], seq.load(Ordering::SeqCst)))
        });
        let p = Persist::start(db, snapshot).unwrap();

        p.put(binding("x", "sip:x@1")); // seq 1
        p.put(binding("y", "sip:y@1")); // seq 2
        p.delete("y", "sip:y@1"); // seq 3
        p.flush().unwrap();

        // As after an overflow: the snapshot covers ops up to 4, so op 4 is
        // skipped and op 5 applied on top of the rewritten table.
        snapshot_seq.store(4, Ordering::SeqCst);
        p.dirty.store(true, Ordering::SeqCst);
        p.put(binding("skipped", "sip:skipped@1")); // seq 4
        p.put(binding("z", "sip:z@1")); // seq 5
        p.flush().unwrap();
        assert!(!p.dirty.load(Ordering::SeqCst));

        p.shutdown();
        p.shutdown(); // idempotent
        assert!(p.flush().is_err(), "flush after shutdown reports the stopped writer");
        assert_eq!(contacts_on_disk(&path, 0), ["sip:a@1", "sip:b@1", "sip:z@1"]);
    }

    /// What a REGISTER's 200 waits on: completes once the op is on disk,
    /// and not before (a writer that is not running never completes it).
    #[tokio::test]
    async fn durable_completes_when_the_queued_ops_are_committed() {
        let (tx, _rx) = mpsc::sync_channel(8);
        let stalled = Persist {
            tx,
            dirty: Arc::new(AtomicBool::new(false)),
            seq: AtomicU64::new(0),
            committed: Arc::new(tokio::sync::watch::Sender::new(0)),
            writer: Mutex::new(None),
        };
        stalled.put(binding("a", "sip:a@1"));
        let waiting = tokio::time::timeout(std::time::Duration::from_millis(50), stalled.durable()).await;
        assert!(waiting.is_err(), "nothing committed the op");

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.redb");
        let (db, _) = open(&path, 0).unwrap();
        let p = Persist::start(db, Box::new(|| None)).unwrap();
        assert!(tokio::time::timeout(std::time::Duration::from_secs(5), p.durable()).await.is_ok(), "nothing queued");
        for i in 0..100 {
            p.put(binding("a", &format!("sip:a@{i}")));
        }
        tokio::time::timeout(std::time::Duration::from_secs(10), p.durable()).await.expect("committed");
        assert!(*p.committed.borrow() >= 100, "the commit covered every op");
        p.shutdown();
        assert_eq!(contacts_on_disk(&path, 0).len(), 100);
    }

    #[test]
    fn open_drops_expired_records() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.redb");
        let (db, _) = open(&path, 0).unwrap();
        let p = Persist::start(db, Box::new(|| None)).unwrap();
        let mut old = binding("old", "sip:old@1");
        old.expires_at = 100;
        p.put(old);
        p.put(binding("new", "sip:new@1"));
        p.shutdown();
        assert_eq!(contacts_on_disk(&path, 0).len(), 2);
        assert_eq!(contacts_on_disk(&path, 1000), ["sip:new@1"]);
        // ...and removes them from the file, not just from the result.
        let (db, _) = open(&path, 0).unwrap();
        let txn = redb::ReadableDatabase::begin_read(&db).unwrap();
        let table = txn.open_table(BINDINGS).unwrap();
        assert_eq!(redb::ReadableTableMetadata::len(&table).unwrap(), 1);
    }

    /// A record as every version so far wrote it (`received` as text) loads with its next
    /// hop typed, and is written back as the same text.
    #[test]
    fn received_text_stays_the_stored_format() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.redb");
        let stored = br#"{"aor":"alice","contact":"sip:alice@10.0.0.5:5060","q":null,"expires_at":18446744073709551615,"call_id":"c","cseq":1,"received":"udp:[2001:db8::2]:5062","user_agent":null,"last_modified":0}"#;
        {
            let db = Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            txn.open_table(BINDINGS).unwrap().insert(("alice", "sip:alice@10.0.0.5:5060"), stored.as_slice()).unwrap();
            txn.commit().unwrap();
        }
        let (_db, live) = open(&path, 0).unwrap();
        let received = live[0].received.as_ref().expect("received");
        assert_eq!(received.socket_addr(), Some("[2001:db8::2]:5062".parse().unwrap()));
        assert_eq!(serde_json::to_vec(&live[0]).unwrap(), stored);
    }
}
