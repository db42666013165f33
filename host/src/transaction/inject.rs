//! Branch injection, as OpenSIPS's TM has it for event-based routing (push notifications,
//! call pickup): [`ServerTx::wait_for_new_branches`] (`t_wait_for_new_branches`) keeps an
//! INVITE transaction open without branches, [`ServerTx::inject`] (`t_inject_branches`)
//! forks it later from an unrelated route (found with [`Core::find_tx`](super::Core::find_tx)),
//! and [`ServerTx::stop_waiting`] (`t_wait_no_more_branches`) ends the wait: called by the
//! route, or by the runtime when the transaction's last EBR notify subscription expires.
//! [`ServerTx::on_end`] lets those subscriptions go with the transaction.
//!
//! The wait is a "phony branch" of the response context (`fork`): bounded by Timer C from
//! the call, so a misbehaving route cannot keep a transaction forever.

use tokio::time::Instant;

use super::fork::ProxyEvent;
use super::inbox::PushError;
use super::key::MAGIC_COOKIE;
use super::relay::{check_open, plan_branch, usable_plans};
use super::server_tx::{ServerTx, WaitTu};
use super::{Forward, Target, TmError, build};

impl ServerTx {
    /// OpenSIPS `t_wait_for_new_branches`: keeps this INVITE transaction open with no
    /// branch (or after the branches of a relay end) so branches can be injected later with
    /// [`inject`](ServerTx::inject). `template` gives the edits, Record-Route and hooks of
    /// the injected branches (its `targets` are not used: call
    /// [`relay`](ServerTx::relay) to fork now); its hooks are armed at once, so an
    /// `on_failure` also sees the timeout.
    ///
    /// While waiting, failed branches do not conclude the transaction. The wait ends when
    /// `expected` injections (calls that started at least one branch; `Some(0)` = no limit)
    /// were made (then, once their branches ended, the usual best response or failure hook),
    /// when Timer C passes (a synthetic 408 joins the branches' finals: failure hook if
    /// armed, else the best response, typically 408), on [`stop_waiting`](ServerTx::stop_waiting),
    /// on a 2xx or 6xx, when the route replies, or when the caller CANCELs (487). Calling it
    /// again restarts the wait with the new template and `expected`.
    ///
    /// Errors: not an INVITE or no transaction: [`TmError::Completed`] (also when CANCELled
    /// or ended by a 2xx/6xx); already answered: [`TmError::AlreadyAnswered`].
    pub fn wait_for_new_branches(&self, template: Forward, expected: Option<u32>) -> Result<(), TmError> {
        if !self.inner.is_invite || !self.has_transaction() {
            return Err(TmError::Completed);
        }
        let until = Instant::now() + self.inner.core.timers.c();
        let Forward { edits, record_route, on_reply, on_failure, .. } = template;
        let sender = {
            let mut tu = self.tu();
            check_open(&tu)?;
            tu.stages_requested += 1;
            tu.wait = Some(WaitTu { expected_left: expected.filter(|&n| n > 0) });
            let kept = Forward {
                edits,
                record_route,
                on_reply: on_reply.clone(),
                on_failure: on_failure.clone(),
                ..Forward::default()
            };
            tu.wait_template = Some(Box::new(kept));
            self.context_sender(&mut tu)
        };
        if let Err(e) = sender.push(ProxyEvent::Wait { until, on_reply, on_failure }) {
            let mut tu = self.tu();
            tu.stages_requested -= 1;
            tu.wait = None;
            return Err(TmError::Transport(format!("response context busy: {e}")));
        }
        Ok(())
    }

    /// OpenSIPS `t_inject_branches`: starts branches to `targets` (Request-URIs, each with
    /// its explicit next hop if any), built with the wait template, else with the last
    /// relay's edits, Record-Route and hooks. A target whose URI and next hop were
    /// already forked in this transaction is skipped (no duplicate INVITE after a
    /// re-REGISTER), as are repeats within `targets`. `cancel_existing` CANCELs the pending
    /// branches first (call pickup; the CANCEL carries `Reason: SIP ;cause=200 ;text="Call
    /// completed elsewhere"`). Returns how many branches were started (0: all known).
    ///
    /// Errors as [`relay`](ServerTx::relay): answered, CANCELled or ended by a 2xx/6xx, no
    /// transaction, Max-Forwards 0, or a target unusable (nothing started then).
    pub fn inject(&self, targets: Vec<Target>, cancel_existing: bool) -> Result<u32, TmError> {
        if !self.has_transaction() {
            return Err(TmError::Completed);
        }
        let mf = self.max_forwards()?;
        // Candidates: not forked yet, first occurrence only.
        let (template, first, candidates) = {
            let mut tu = self.tu();
            check_open(&tu)?;
            let mut candidates: Vec<Target> = Vec::with_capacity(targets.len());
            for Target { uri, next_hop } in targets {
                let uri = match build::strip_brackets(&uri) {
                    bare if bare.len() == uri.len() => uri,
                    bare => bare.to_owned(),
                };
                let c = Target { uri, next_hop };
                if !tu.forked.contains(&c) && !candidates.contains(&c) {
                    candidates.push(c);
                }
            }
            if !candidates.is_empty() {
                self.check_branch_room(&tu, candidates.len())?;
            }
            let template = tu.wait_template.as_deref().or(tu.last_relay.as_deref()).cloned().unwrap_or_default();
            let first = tu.next_branch;
            tu.next_branch += candidates.len();
            (template, first, candidates)
        };
        if candidates.is_empty() {
            return Ok(0);
        }
        let core = &self.inner.core;
        let prefix = format!("{MAGIC_COOKIE}{}.{}", core.loop_hash(self.request()), core.tx_salt(self.request()));
        let rr = template.record_route.then(|| self.record_route_value());
        let mut plans = usable_plans(candidates.iter().enumerate().map(|(k, t)| {
            let branch = format!("{prefix}.{}", first + k);
            plan_branch(self, &template.edits, &t.uri, t.next_hop.as_ref(), mf, rr.as_deref(), branch)
        }))?;

        // Commit under the lock: a concurrent injection of the same contact (two events for
        // one re-REGISTER) loses here, and a CANCEL either sees this stage or fails it.
        let (sender, stop_waiting, recorded) = {
            let mut tu = self.tu();
            check_open(&tu)?;
            plans.retain(|p| !tu.forked.contains(&p.target));
            if plans.is_empty() {
                return Ok(0);
            }
            let recorded = tu.forked.len();
            tu.forked.extend(plans.iter().map(|p| p.target.clone()));
            tu.stages_requested += 1;
            let mut stop_waiting = false;
            if let Some(WaitTu { expected_left: Some(n) }) = tu.wait.as_mut() {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    tu.wait = None;
                    stop_waiting = true;
                }
            }
            (self.context_sender(&mut tu), stop_waiting, recorded)
        };
        let started = u32::try_from(plans.len()).unwrap_or(u32::MAX);
        let ev = ProxyEvent::Branches {
            plans,
            on_reply: template.on_reply,
            on_failure: template.on_failure,
            cancel_existing,
            stop_waiting,
        };
        if let Err(e) = sender.push(ev) {
            let mut tu = self.tu();
            tu.stages_requested -= 1;
            tu.forked.truncate(recorded);
            return Err(TmError::Transport(format!("response context busy: {e}")));
        }
        Ok(started)
    }

    /// OpenSIPS `t_wait_no_more_branches`: no more injections are awaited; once the
    /// current branches ended (at once if there are none), the best response or failure
    /// hook follows. Returns whether a wait was in force.
    pub fn stop_waiting(&self) -> bool {
        let proxy = {
            let mut tu = self.tu();
            if tu.wait.take().is_none() {
                return false;
            }
            tu.proxy.clone()
        };
        if let Some(p) = proxy {
            // The inbox is bounded; when it is full, deliver from a task rather than lose
            // the stop (the wait would then last until Timer C).
            if let Err(PushError::Full(stop)) = p.push(ProxyEvent::StopWaiting) {
                tokio::spawn(async move {
                    let _ = p.send(stop).await;
                });
            }
        }
        true
    }

    /// Is a `wait_for_new_branches` in force (not yet ended by injections, timeout, stop,
    /// answer or CANCEL)?
    pub fn is_waiting(&self) -> bool {
        self.tu().wait.is_some()
    }

    /// Runs `hook` with the transaction id once the transaction is gone (terminated and
    /// removed from the core's tables, so [`Core::find_tx`](super::Core::find_tx) no longer
    /// finds it): e.g. to drop the EBR notify subscriptions it made. Returns false, and
    /// drops `hook`, when there is no transaction (an ACK) or it is already gone.
    pub fn on_end(&self, hook: impl FnOnce(u64) + Send + 'static) -> bool {
        if !self.has_transaction() {
            return false;
        }
        let mut tu = self.tu();
        if tu.ended {
            return false;
        }
        tu.on_end.push(Box::new(hook));
        true
    }
}
