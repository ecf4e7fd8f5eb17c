//! The scenarios, in one table, and what they share. Each one uses fresh
//! instance ids, is bounded in time (a deadline checked by every wait, and a
//! hard timeout around it), and opens its sockets through [`Sockets`], which
//! closes them and counts what they saw whatever happened.

use std::time::{Duration, Instant};

use futures_util::future::LocalBoxFuture;
use serde_json::Value;

use crate::ctx::{Better, Ctx, Headline, Out};
use crate::stats::Summary;
use crate::ws::{padded, set_frame, Conn, Counts, Delivery, Group, Kind, Tracker};

mod connect;
mod fanout;
mod fullstate;
mod http;
mod httpput;
mod latency;
mod multi;
mod sockets1k;
mod sync;
mod throughput;

type Body = for<'a> fn(&'a mut Ctx, &'a mut Out, &'a mut Sockets) -> LocalBoxFuture<'a, Outcome>;
type Outcome = Result<(), String>;

/// Every scenario, in the default order: its name, its time budget in
/// seconds before `--timeout-scale`, and what it runs.
pub static ALL: [Scenario; 11] = [
    Scenario::new("latency", 180, |c, o, s| Box::pin(latency::run(c, o, s))),
    Scenario::new("throughput", 120, |c, o, s| {
        Box::pin(throughput::run(c, o, s))
    }),
    Scenario::new("fanout", 180, |c, o, s| Box::pin(fanout::run(c, o, s))),
    Scenario::new("sync", 180, |c, o, s| Box::pin(sync::run(c, o, s))),
    Scenario::new("connect", 120, |c, o, s| Box::pin(connect::run(c, o, s))),
    Scenario::new("http", 120, |c, o, s| Box::pin(http::run(c, o, s))),
    Scenario::new("httpput", 120, |c, o, s| Box::pin(httpput::run(c, o, s))),
    Scenario::new("multi", 300, |c, o, s| {
        Box::pin(multi::run(c, o, s, &multi::MULTI))
    }),
    Scenario::new("fullstate", 300, |c, o, s| {
        Box::pin(fullstate::run(c, o, s))
    }),
    Scenario::new("sockets1k", 300, |c, o, s| {
        Box::pin(sockets1k::run(c, o, s))
    }),
    Scenario::new("multi100", 300, |c, o, s| {
        Box::pin(multi::run(c, o, s, &multi::MULTI100))
    }),
];

/// The scenario called `name`.
pub fn find(name: &str) -> Option<&'static Scenario> {
    ALL.iter().find(|s| s.name == name)
}

/// Every scenario's name, comma-separated.
pub fn names() -> String {
    ALL.iter().map(|s| s.name).collect::<Vec<_>>().join(",")
}

/// A scenario: what it is called, how long it may take, and what it does
/// with the context, its outcome and the sockets it is given.
pub struct Scenario {
    pub name: &'static str,
    budget: Duration,
    body: Body,
}

impl Scenario {
    const fn new(name: &'static str, budget_secs: u64, body: Body) -> Scenario {
        Scenario {
            name,
            budget: Duration::from_secs(budget_secs),
            body,
        }
    }

    /// The time budget before `--timeout-scale`.
    pub fn base_timeout(&self) -> Duration {
        self.budget
    }

    /// Runs the scenario; returns (ok, its JSON, its headline figures).
    /// However the scenario ends (unless the hard timeout stops it), the
    /// sockets it opened are then closed and their counts go into its JSON.
    pub async fn run(&self, ctx: &mut Ctx) -> (bool, Value, Vec<Headline>) {
        let timeout = ctx.scaled(self.budget);
        let mut out = Out::new(self.name, timeout, ctx);
        let mut sockets = Sockets::default();
        let work = (self.body)(ctx, &mut out, &mut sockets);
        // The scenario checks its own deadline everywhere; this is the backstop.
        let res = match tokio::time::timeout(timeout + Duration::from_secs(20), work).await {
            Ok(r) => {
                sockets.finish(&mut out).await;
                r
            }
            Err(_) => {
                // Stopped mid-way: its sockets are dropped, not closed.
                drop(sockets);
                Err(format!(
                    "hard timeout: still running {} s after its {} s budget",
                    20,
                    timeout.as_secs()
                ))
            }
        };
        let ok = res.is_ok();
        let (v, h) = out.finish(ctx, ok, res.err());
        (ok, v, h)
    }
}

/// The size of every value the set-timing scenarios (latency, throughput,
/// fanout, multi) write.
pub const VALUE_BYTES: usize = 32;

/// How long to wait for the server's close frames at the end.
pub const CLOSE_GRACE: Duration = Duration::from_secs(3);

/// The earlier of `deadline` and `d` from now.
pub fn within(deadline: Instant, d: Duration) -> Instant {
    deadline.min(Instant::now() + d)
}

pub fn ms_between(a: Instant, b: Instant) -> f64 {
    b.saturating_duration_since(a).as_secs_f64() * 1000.0
}

/// A fresh instance id for `name`, recorded as the `instanceId` parameter.
pub async fn instance(ctx: &mut Ctx, out: &mut Out, name: &str) -> Result<String, String> {
    let id = ctx.instance(name).await?;
    out.param("instanceId", id.clone());
    Ok(id)
}

/// The prologue of the scenarios on one instance with every socket open
/// from the start: makes the instance `name`, opens `n` tracked sockets on
/// it all at once and waits up to 30 s for their `sync`.
pub async fn tracked_instance<'s>(
    ctx: &mut Ctx,
    out: &mut Out,
    sockets: &'s mut Sockets,
    name: &str,
    n: usize,
) -> Result<(String, &'s mut Group, &'s mut Tracker), String> {
    let instance = instance(ctx, out, name).await?;
    let (g, t) = sockets.tracked(n);
    open_synced(ctx, out, g, &instance, n, n, Duration::from_secs(30)).await?;
    if ctx.yjs {
        y_listener(ctx, &instance).await?;
        out.params(serde_json::json!({"yjs": true}));
    }
    Ok((instance, g, t))
}

/// `--yjs`: one MindCache 3 socket on `instance` that sends the empty Step1
/// (which makes the server build the instance's Y document) and, once the
/// Step2 answered, reads every update until the process ends. The other
/// sockets of the scenario never send a frame of their own, so they stay
/// unclassified and get the binary updates too, as yjs.md says.
async fn y_listener(ctx: &Ctx, instance: &str) -> Result<(), String> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::Message;
    let url = ctx.target.sync_url(instance);
    let mut req = url
        .as_str()
        .into_client_request()
        .map_err(|e| e.to_string())?;
    if let Some(auth) = &ctx.target.auth {
        let v = auth.parse().map_err(|_| "bad token".to_string())?;
        req.headers_mut().insert("authorization", v);
    }
    let (mut ws, _) = tokio_tungstenite::connect_async(req)
        .await
        .map_err(|e| format!("Y socket: {e}"))?;
    futures_util::SinkExt::send(&mut ws, Message::binary(vec![0u8, 1, 0]))
        .await
        .map_err(|e| format!("Y socket: {e}"))?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match tokio::time::timeout_at(deadline, futures_util::StreamExt::next(&mut ws)).await {
            Ok(Some(Ok(Message::Binary(b)))) if b.first() == Some(&1) => break,
            Ok(Some(Ok(_))) => continue,
            other => return Err(format!("Y socket: no Step2 ({other:?})")),
        }
    }
    tokio::spawn(async move { while futures_util::StreamExt::next(&mut ws).await.is_some() {} });
    Ok(())
}

/// Records percentiles of `s` as metrics `p{p}Ms` and headline figures
/// `p{p}` (milliseconds, lower is better).
pub fn percentiles(out: &mut Out, s: &Summary, ps: &[u32]) {
    named_percentiles(out, "", s, ps);
}

/// [`percentiles`] for one of several measures of a scenario: metrics
/// `{name}_p{p}Ms` and headline figures `{name}_p{p}` (plain `p{p}` when
/// `name` is empty).
pub fn named_percentiles(out: &mut Out, name: &str, s: &Summary, ps: &[u32]) {
    let sep = if name.is_empty() { "" } else { "_" };
    for &p in ps {
        let v = s.pct(f64::from(p));
        let figure = format!("{name}{sep}p{p}");
        out.ms(&format!("{figure}Ms"), v);
        out.head(&figure, v, "ms", Better::Lower);
    }
}

/// Records `ops` operations done from `start` to `end`: metrics
/// `elapsedMs` and `opsPerSec` and the headline figure `ops_per_s`, each
/// named after `name` when it is not empty (`{name}ElapsedMs`,
/// `{name}_ops_per_s`). Returns the ops/s.
pub fn rate(out: &mut Out, name: &str, ops: usize, start: Instant, end: Instant) -> f64 {
    let secs = end.saturating_duration_since(start).as_secs_f64();
    let per_sec = ops as f64 / secs;
    let metric = |m: &str| match name {
        "" => m.to_string(),
        _ => format!("{name}{}{}", m[..1].to_ascii_uppercase(), &m[1..]),
    };
    out.ms(&metric("elapsedMs"), Some(secs * 1000.0));
    out.metric(&metric("opsPerSec"), crate::stats::r3(per_sec));
    let figure = match name {
        "" => "ops_per_s".to_string(),
        _ => format!("{name}_ops_per_s"),
    };
    out.head(&figure, Some(per_sec), "ops/s", Better::Higher);
    per_sec
}

/// An error unless every delivery counted in `c` came in order, once, with
/// the value sent.
pub fn stream_check(what: &str, c: &Counts) -> Result<(), String> {
    if c.reordered_deliveries + c.duplicate_deliveries + c.value_mismatches == 0 {
        return Ok(());
    }
    Err(format!(
        "{what}: {} reordered, {} duplicated, {} wrong values",
        c.reordered_deliveries, c.duplicate_deliveries, c.value_mismatches
    ))
}

/// A scenario's sockets: one [`Group`] per instance and, for groups whose
/// deliveries are tracked, a [`Tracker`] each.
#[derive(Default)]
pub struct Sockets {
    pub groups: Vec<Group>,
    pub trackers: Vec<Tracker>,
}

impl Sockets {
    /// A new group, deliveries not tracked.
    pub fn group(&mut self) -> &mut Group {
        self.groups.push(Group::new());
        self.groups.last_mut().unwrap()
    }

    /// A new group, with a tracker of deliveries to its `sockets` sockets.
    pub fn tracked(&mut self, sockets: usize) -> (&mut Group, &mut Tracker) {
        self.groups.push(Group::new());
        self.trackers.push(Tracker::new(sockets));
        (
            self.groups.last_mut().unwrap(),
            self.trackers.last_mut().unwrap(),
        )
    }

    /// Closes every socket, counts the deliveries that never came and
    /// merges every count into `out`.
    async fn finish(&mut self, out: &mut Out) {
        let closes = self.groups.iter_mut().map(|g| g.close_all(CLOSE_GRACE));
        futures_util::future::join_all(closes).await;
        for g in &self.groups {
            out.absorb(g);
        }
        for t in self.trackers.iter_mut() {
            t.finish();
            out.absorb_tracker(t);
        }
    }
}

/// Opens `n` sockets on `instance`, `concurrency` at a time, then waits up
/// to `wait` (not past the scenario's deadline) until each has its `sync`;
/// returns their indices.
pub async fn open_synced(
    ctx: &Ctx,
    out: &Out,
    g: &mut Group,
    instance: &str,
    n: usize,
    concurrency: usize,
    wait: Duration,
) -> Result<Vec<usize>, String> {
    let ids = g.connect(&ctx.target, instance, n, concurrency).await?;
    g.wait_synced(&ids, within(out.deadline, wait)).await?;
    Ok(ids)
}

/// One set timed to every socket.
pub struct Set {
    pub seq: usize,
    pub sent: Instant,
    /// Every socket got it in time.
    pub delivered: bool,
}

/// Registers the write of `key` = `value` with `t`, timed from now.
pub fn start_write(t: &mut Tracker, key: &str, value: String) -> (usize, Instant) {
    let seq = t.register(key.to_string(), value);
    let sent = Instant::now();
    t.sent_at[seq] = Some(sent);
    (seq, sent)
}

/// Reads frames until every socket of `t` has the write `seq` (true) or
/// `deadline` passes (false).
pub async fn delivered_everywhere(
    g: &mut Group,
    t: &mut Tracker,
    seq: usize,
    deadline: Instant,
) -> bool {
    g.pump(deadline, |f| match &f.kind {
        Kind::KeyUpdated { key, value, .. } => {
            matches!(t.on_key_updated(f.sock, key, value, f.at), Delivery::New { seq: s, complete: true } if s == seq)
        }
        _ => false,
    })
    .await
}

/// Sets `key` to `value` from socket 0 and reads frames until every socket
/// has it, for at most `per_set` (and not past `deadline`).
pub async fn set_everywhere(
    g: &mut Group,
    t: &mut Tracker,
    key: &str,
    value: String,
    deadline: Instant,
    per_set: Duration,
) -> Result<Set, String> {
    let frame = set_frame(key, &value);
    let (seq, sent) = start_write(t, key, value);
    g.send(0, frame).await?;
    let delivered = delivered_everywhere(g, t, seq, within(deadline, per_set)).await;
    Ok(Set {
        seq,
        sent,
        delivered,
    })
}

/// Descriptors kept free beyond the sockets (HTTP pool, /proc reads, stdio).
const SPARE_FDS: libc::rlim_t = 256;

/// Makes room for `sockets` open sockets: raises this process's soft
/// RLIMIT_NOFILE (up to the hard limit) when it is too low, records the limit
/// as the `fdLimit` parameter, and fails with what to run when even the hard
/// limit is too low.
pub fn ensure_fds(out: &mut Out, sockets: usize) -> Result<(), String> {
    let need = sockets as libc::rlim_t + SPARE_FDS;
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(format!(
            "getrlimit(RLIMIT_NOFILE): {}",
            std::io::Error::last_os_error()
        ));
    }
    if lim.rlim_cur < need {
        let raised = libc::rlimit {
            rlim_cur: need.min(lim.rlim_max),
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit only reads the struct it is given; a soft limit
        // at most the hard one is always allowed.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim = raised;
        }
    }
    out.param("fdLimit", lim.rlim_cur);
    if lim.rlim_cur < need {
        return Err(format!(
            "{sockets} sockets need about {need} file descriptors, but the limit is {} \
             (hard {}): run `ulimit -n {need}` (as a user allowed to) first",
            lim.rlim_cur, lim.rlim_max
        ));
    }
    Ok(())
}

/// Milliseconds from the start of each connection attempt to its `sync`
/// (connections without one are left out).
pub fn sync_times(conns: &[Conn]) -> Vec<f64> {
    conns
        .iter()
        .filter_map(|c| c.synced.map(|s| ms_between(c.started, s)))
        .collect()
}

/// Records the parameters of a [`fan_out`] run to `clients` sockets opened
/// `concurrency` at a time.
pub fn fan_out_params(
    out: &mut Out,
    clients: usize,
    (warmup, sets): (usize, usize),
    concurrency: usize,
    per_set: Duration,
) {
    out.params(serde_json::json!({
        "clients": clients, "sets": sets, "warmupSets": warmup,
        "connectConcurrency": concurrency, "valueBytes": VALUE_BYTES,
        "perSetTimeoutMs": per_set.as_millis() as u64,
    }));
}

/// Send → first and send → last delivery (ms) of the counted sets of
/// [`fan_out`].
pub struct FanOut {
    pub first: Vec<f64>,
    pub last: Vec<f64>,
}

/// `warmup + sets` sets of [`VALUE_BYTES`]-byte values, keys `{prefix}NNNN`,
/// one at a time from socket 0, each of which every socket of `g` must get
/// within `per_set`; the first `warmup` are not counted.
pub async fn fan_out(
    g: &mut Group,
    t: &mut Tracker,
    deadline: Instant,
    prefix: &str,
    (warmup, sets): (usize, usize),
    per_set: Duration,
) -> Result<FanOut, String> {
    let mut times = FanOut {
        first: Vec::with_capacity(sets),
        last: Vec::with_capacity(sets),
    };
    for i in 0..warmup + sets {
        let key = format!("{prefix}{i:04}");
        let value = padded(&format!("v{i}:"), VALUE_BYTES);
        let set = set_everywhere(g, t, &key, value, deadline, per_set).await?;
        if !set.delivered {
            return Err(format!(
                "set \"{key}\": only {}/{} sockets received key_updated within {} ms",
                t.delivered[set.seq],
                g.conns.len(),
                per_set.as_millis()
            ));
        }
        if i >= warmup {
            if let (Some(f), Some(l)) = t.first_last(set.seq) {
                times.first.push(ms_between(set.sent, f));
                times.last.push(ms_between(set.sent, l));
            }
        }
    }
    Ok(times)
}
