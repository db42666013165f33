//! The sample harness: runs a route module through scenarios (TOML files,
//! docs/HARNESS.md) and checks what it did. `sipbox test` is its CLI; a
//! route's own crate uses it from `cargo test`:
//!
//! ```no_run
//! use sipbox::harness::Harness;
//! use sipbox::runtime::RouteSource;
//!
//! let harness = Harness::new(RouteSource::File("target/wasm32-wasip2/release/my_route.wasm".into()));
//! let report = harness.run_file("scenarios/call.toml".as_ref()).expect("the scenario runs");
//! assert!(report.passed(), "{report}");
//! ```
//!
//! What runs is the server's own stack ([`Stack`](crate::server::Stack)):
//! the route runtime with its limits and journaling, the transaction layer
//! with its timers and forking, the registrar, the event bus with EBR. Only
//! the edges differ, through seams the production code offers: the
//! transports are an in-memory wire ([`Transports::memory`]) whose far ends
//! are simulated user agents ([`endpoints`]), `rest` requests go to a
//! recorder that answers from the scenario's stubs, and raised events and
//! log lines are recorded ([`trace`]).
//!
//! Time is virtual: each scenario runs on its own thread, in a
//! current-thread tokio runtime whose clock is paused, so it advances
//! straight to the next timer whenever everything waits. A 20 s
//! `wait-for-event` timeout or Timer C takes no wall time; the module's CPU
//! limit still runs on the real clock (the epoch ticker is a thread).

pub mod cli;
mod credentials;
pub mod endpoints;
mod expect;
pub mod scenario;
mod script;
mod short;
pub mod trace;
mod wildcard;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant as WallInstant};

use anyhow::Context;
use serde_json::json;
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt;

pub use expect::{Failure, Report};
pub use scenario::Scenario;

use self::endpoints::{Endpoints, PhoneSpec, SentRequest};
use self::trace::{HttpStubAnswer, MiCall, Recorder};
use crate::config::Config;
use crate::mi::{self, MiContext};
use crate::runtime::{HttpClient, Reloader, RouteSource};
use crate::server::{Seams, Stack};
use crate::sip;
use crate::transport::{Proto, Transports};

/// The address the proxy has on the in-memory wire (TEST-NET-1).
pub const PROXY_ADDRESS: &str = "192.0.2.1:5060";

/// How long after its last step a scenario may run, unless it sets `until`.
const DEFAULT_HORIZON: Duration = Duration::from_secs(600);
/// How often, in virtual time, the driver looks whether anything is left to happen.
const SETTLE_POLL: Duration = Duration::from_millis(20);

/// Runs scenarios against one route module.
pub struct Harness {
    route: RouteSource,
    base: toml::Table,
    base_dir: Option<PathBuf>,
}

impl Harness {
    /// A harness for `route` on the embedded default configuration.
    pub fn new(route: RouteSource) -> Harness {
        Harness { route, base: toml::Table::new(), base_dir: None }
    }

    /// Runs under the tables of this sipbox.toml (a route project's), then
    /// each scenario's `[config]` over them. `[server]` and `[mi]` do not
    /// apply: the harness has its own wire and calls the MI in process.
    pub fn with_config_file(mut self, path: &Path) -> anyhow::Result<Harness> {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        let table: toml::Table = toml::from_str(&text).with_context(|| format!("invalid config {}", path.display()))?;
        self.base = table;
        self.base_dir = path.parent().map(Path::to_path_buf);
        Ok(self)
    }

    /// Reads and runs one scenario file.
    ///
    /// # Errors
    /// The file is not a valid scenario, or the route cannot run at all
    /// (a module that does not load, a config that is refused): a scenario
    /// that runs and fails is an `Ok` report that did not pass.
    pub fn run_file(&self, path: &Path) -> anyhow::Result<Report> {
        let scenario = Scenario::load(path)?;
        self.run(&scenario)
    }

    /// Runs one scenario on a thread of its own (its clock is virtual).
    ///
    /// # Errors
    /// As [`run_file`](Self::run_file).
    pub fn run(&self, scenario: &Scenario) -> anyhow::Result<Report> {
        let config = self.config_for(scenario)?;
        std::thread::scope(|scope| {
            let run = std::thread::Builder::new()
                .name("sipbox-harness".into())
                .spawn_scoped(scope, || run_scenario(config, scenario))
                .context("cannot start the scenario's thread")?;
            run.join().map_err(|_| anyhow::anyhow!("the scenario's thread panicked"))?
        })
    }

    /// The config a scenario runs under: the defaults, the base file's
    /// tables, the scenario's `[config]`, then what the harness fixes.
    fn config_for(&self, scenario: &Scenario) -> anyhow::Result<Config> {
        let mut merged = self.base.clone();
        merged.remove("server");
        merged.remove("mi");
        merge(&mut merged, scenario.config.clone());
        let text = toml::to_string(&merged).context("the merged config")?;
        let mut config = Config::parse(&text).context("the scenario's [config]")?;
        config.server.listen = vec![format!("udp:{PROXY_ADDRESS}")];
        config.location.db_path = None;
        config.auth.db_path = None;
        // The harness's proxy address is not loopback, but nothing outside
        // reaches it: off unless the scenario asks for authentication.
        config.auth.required.get_or_insert(false);
        config.pike.enabled.get_or_insert(false);
        config.routes.watch = false;
        config.routes.module = match &self.route {
            RouteSource::Embedded => None,
            RouteSource::File(path) => Some(path.clone()),
        };
        let dir = self.base_dir.clone().or_else(|| scenario.path.as_ref().and_then(|p| p.parent()).map(Into::into));
        if let Some(dir) = dir {
            for path in config.routes.modules.values_mut().filter(|p| p.is_relative()) {
                *path = dir.join(&*path);
            }
        }
        Ok(config)
    }
}

/// Deep-merges `over` into `base`: tables key by key, anything else replaced.
fn merge(base: &mut toml::Table, over: toml::Table) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

fn run_scenario(config: Config, scenario: &Scenario) -> anyhow::Result<Report> {
    let wall = WallInstant::now();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .context("cannot build the scenario's runtime")?;
    let recorder = runtime.block_on(async { Recorder::new() });
    // Log lines of this thread (the whole scenario runs on it) are recorded;
    // other threads' logging is untouched.
    let filter = tracing_subscriber::EnvFilter::new("info,route=trace");
    let subscriber = tracing_subscriber::registry().with(recorder.log_layer().with_filter(filter));
    let _logging = tracing::subscriber::set_default(subscriber);
    let outcome = runtime.block_on(drive(config, scenario, recorder.clone()))?;
    let trace = recorder.take();
    Ok(expect::evaluate(scenario, trace, outcome, wall.elapsed()))
}

/// What the driver hands the evaluation beside the trace.
pub(crate) struct Outcome {
    /// Virtual time at the end.
    pub(crate) virtual_time: Duration,
    /// Whether it ended because nothing was left to happen (not at its horizon).
    pub(crate) settled: bool,
    /// `get_statistics all` at the end.
    pub(crate) statistics: serde_json::Value,
    /// Results of the MI commands expectations run at the end, by expectation index.
    pub(crate) final_mi: HashMap<usize, serde_json::Value>,
    /// The requests the steps sent, by step name.
    pub(crate) named: HashMap<String, endpoints::SentRequest>,
    /// The phones' addresses by name.
    pub(crate) phones: HashMap<String, SocketAddr>,
}

async fn drive(config: Config, scenario: &Scenario, recorder: Recorder) -> anyhow::Result<Outcome> {
    let stubs: Vec<HttpStubAnswer> = scenario.http.iter().map(HttpStubAnswer::from).collect();
    let seams =
        Seams { http: HttpClient::with(recorder.http_client(stubs)), observer: Some(recorder.event_observer()) };
    let stack = Stack::build(&config, seams).await?;
    let (transports, mut wire) = Transports::memory(&config.listen_specs()?)?;
    // `sip:bob@local` names the proxy in scenarios.
    let mut domains = config.server.domains.clone();
    domains.push("local".into());
    let transports = transports.with_aliases(&domains);
    let core = stack.core(&config, transports.clone());
    let handler = stack.inbound_handler(&config, &core);
    let proxy: SocketAddr = PROXY_ADDRESS.parse()?;

    let mut phones = HashMap::new();
    let mut phone_specs = HashMap::new();
    for phone in &scenario.phones {
        let address: SocketAddr = phone.address.parse()?;
        phones.insert(phone.name.clone(), address);
        phone_specs.insert(address, PhoneSpec { name: phone.name.clone(), script: phone.script.clone() });
    }
    let endpoints = Endpoints::new(proxy, handler, recorder.clone(), phone_specs);
    let pump = {
        let endpoints = endpoints.clone();
        tokio::spawn(async move {
            while let Some(sent) = wire.recv().await {
                endpoints.on_sent(sent);
            }
        })
    };

    let reloader = Reloader::new(stack.runtime.clone(), config.routes.update(), {
        let routes = config.routes.update();
        Box::new(move || Ok(routes.clone()))
    });
    let mi = MiContext::new(stack.bus.clone(), stack.location.clone(), config.routes.route_set().main)
        .with_flatstore(stack.flatstore.clone())
        .with_runtime(stack.runtime.clone())
        .with_auth(stack.auth.clone())
        .with_reloader(reloader)
        .with_core(core.clone())
        .with_transports(transports);

    given(scenario, &stack)?;

    let mut last = Duration::ZERO;
    for (i, step) in scenario.steps.iter().enumerate() {
        let at = step.at.unwrap_or(last);
        tokio::time::sleep_until(recorder.instant(at)).await;
        last = at;
        if let Err(problem) = act(i, step, &endpoints, &mi, &recorder).await {
            recorder.problem(format!("step {}: {problem}", i + 1));
        }
    }

    // Run until nothing is left to happen (no live transaction, no phone
    // about to answer, no guest running), or the horizon. The paused clock
    // only moves when every task waits, so the wire has been drained by the
    // time a sleep returns.
    let horizon = recorder.instant(scenario.until.unwrap_or(last + DEFAULT_HORIZON));
    let settled = loop {
        tokio::time::sleep(SETTLE_POLL).await;
        let tm = core.stats();
        let quiet = tm.server == 0 && tm.client == 0 && endpoints.running() == 0;
        if quiet && stack.runtime.instances().0 == 0 {
            break true;
        }
        if tokio::time::Instant::now() >= horizon {
            break false;
        }
    };
    let virtual_time = recorder.now();

    let statistics = mi_result(&mi, "get_statistics", json!({ "statistics": ["all"] })).await;
    let mut final_mi = HashMap::new();
    let step_names: Vec<&str> = scenario.steps.iter().filter_map(|s| s.name.as_deref()).collect();
    for (i, e) in scenario.expect.iter().enumerate() {
        if let Some(command) = &e.mi
            && !step_names.contains(&command.as_str())
        {
            let params = e.mi_params.as_ref().map_or(json!({}), toml_to_json);
            final_mi.insert(i, mi_response(&mi, command, params).await);
        }
    }
    pump.abort();
    stack.bus.shutdown().await;
    let named = scenario
        .steps
        .iter()
        .filter_map(|s| s.name.as_ref())
        .filter_map(|name| endpoints.named(name).map(|r| (name.clone(), r)))
        .collect();
    Ok(Outcome { virtual_time, settled, statistics, final_mi, named, phones })
}

/// The registrations and subscriptions the scenario starts with.
fn given(scenario: &Scenario, stack: &Stack) -> anyhow::Result<()> {
    for user in &scenario.users {
        let realm = user.realm.clone().unwrap_or_else(|| stack.auth.config().realm.clone());
        crate::mi::check_username(&user.name).map_err(anyhow::Error::msg)?;
        stack.auth.store().put(crate::auth::Subscriber::with_password(&user.name, &realm, &user.password))?;
    }
    for (i, r) in scenario.registrations.iter().enumerate() {
        let mut contact = format!("<{}>;expires={}", r.contact, r.expires.unwrap_or(3600));
        if let Some(q) = r.q {
            contact.push_str(&format!(";q={q}"));
        }
        let contact_uri = sip::Uri::parse(&r.contact)
            .map_err(|e| anyhow::anyhow!("registration {}: contact {:?}: {e}", i + 1, r.contact))?;
        let source: SocketAddr = format!("{}:{}", contact_uri.host, contact_uri.port.unwrap_or(5060))
            .parse()
            .with_context(|| format!("registration {}: the contact's host must be an IP address", i + 1))?;
        let text = format!(
            "REGISTER sip:{domain} SIP/2.0\r\nVia: SIP/2.0/UDP {source};branch=z9hG4bK-given{i}\r\n\
             Max-Forwards: 70\r\nFrom: <{aor}>;tag=given{i}\r\nTo: <{aor}>\r\nCall-ID: given{i}@harness\r\n\
             CSeq: 1 REGISTER\r\nContact: {contact}\r\nContent-Length: 0\r\n\r\n",
            domain = sip::Uri::parse(&r.aor).map(|u| u.host.to_owned()).unwrap_or_default(),
            aor = r.aor,
        );
        let msg =
            sip::Message::parse(text.into()).map_err(|e| anyhow::anyhow!("registration {} ({}): {e}", i + 1, r.aor))?;
        let outcome = stack.location.save(&msg, source, Proto::Udp);
        anyhow::ensure!(
            outcome.code == 200,
            "registration {} ({} at {}): the registrar answered {} {}",
            i + 1,
            r.aor,
            r.contact,
            outcome.code,
            outcome.reason
        );
    }
    for s in &scenario.subscriptions {
        stack
            .bus
            .subscribe(&s.event, &s.socket, s.expire)
            .map_err(|e| anyhow::anyhow!("subscription of {} to {}: {e}", s.socket, s.event))?;
    }
    Ok(())
}

/// Carries out one step.
async fn act(
    index: usize,
    step: &scenario::Step,
    endpoints: &Endpoints,
    mi: &MiContext,
    recorder: &Recorder,
) -> Result<(), String> {
    if let Some(text) = &step.send {
        let extras = short::Extras { headers: &step.headers, body: step.body.as_deref() };
        let mut address_of = |caller: &str| endpoints.address_of(caller);
        let out = short::build(text, &extras, index as u64 + 1, &mut address_of).map_err(|e| format!("{e:#}"))?;
        let from = match &step.source {
            Some(source) => source.parse().map_err(|_| format!("source {source:?} is not ip:port"))?,
            None => out.source.unwrap_or_else(|| endpoints.address_of(&out.caller)),
        };
        let credentials = match &step.credentials {
            Some(c) => Some(c.split_once(':').ok_or("credentials are \"user:password\"")?),
            None => None,
        }
        .map(|(u, p)| (u.to_owned(), p.to_owned()));
        endpoints.send_with(SentRequest { name: step.name.clone(), msg: out.msg, from, credentials, attempt: 0 });
    } else if let Some(name) = &step.cancel {
        endpoints.cancel(name)?;
    } else if let Some(name) = &step.hangup {
        endpoints.hangup(name)?;
    } else if let Some(event) = &step.raise {
        let mut params = json!({ "event": event });
        if let Some(p) = &step.params {
            params["params"] = toml_to_json(p);
        }
        let response = mi_response(mi, "raise_event", params).await;
        if let Some(error) = response.get("error") {
            return Err(format!("raise_event {event} was refused: {error}"));
        }
    } else if let Some(command) = &step.mi {
        let params = step.params.as_ref().map_or(json!({}), toml_to_json);
        let response = mi_response(mi, command, params).await;
        let call = MiCall { at: recorder.now(), name: step.name.clone(), method: command.clone(), response };
        recorder.lock().mi.push(call);
    }
    Ok(())
}

async fn mi_response(ctx: &MiContext, method: &str, params: serde_json::Value) -> serde_json::Value {
    let request = json!({ "jsonrpc": "2.0", "method": method, "params": params, "id": 1 });
    mi::call(ctx, &request).await.unwrap_or(serde_json::Value::Null)
}

async fn mi_result(ctx: &MiContext, method: &str, params: serde_json::Value) -> serde_json::Value {
    let mut response = mi_response(ctx, method, params).await;
    response.get_mut("result").map(serde_json::Value::take).unwrap_or(serde_json::Value::Null)
}

/// TOML as JSON (datetimes become strings).
pub(crate) fn toml_to_json(v: &toml::Value) -> serde_json::Value {
    match v {
        toml::Value::String(s) => json!(s),
        toml::Value::Integer(i) => json!(i),
        toml::Value::Float(f) => json!(f),
        toml::Value::Boolean(b) => json!(b),
        toml::Value::Datetime(d) => json!(d.to_string()),
        toml::Value::Array(a) => serde_json::Value::Array(a.iter().map(toml_to_json).collect()),
        toml::Value::Table(t) => {
            serde_json::Value::Object(t.iter().map(|(k, v)| (k.clone(), toml_to_json(v))).collect())
        }
    }
}

/// Runs every scenario in `paths`; the reports in the same order, or why a
/// scenario could not run at all.
pub fn run_all(harness: &Harness, paths: &[PathBuf]) -> Vec<(PathBuf, anyhow::Result<Report>)> {
    paths.iter().map(|p| (p.clone(), harness.run_file(p))).collect()
}

#[cfg(test)]
mod tests;
