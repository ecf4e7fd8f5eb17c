//! `httpput`: writes through the HTTP data API, watched by one WebSocket
//! listener on the same instance. First sequential
//! `PUT /api/instances/:id/keys/:key` (the next one sent when the previous
//! was answered and its `key_updated` reached the listener), then `writers`
//! concurrent writers, each doing its PUTs one after another on keys of its
//! own. Every answer must be `200` naming the key, echoing the value and
//! `changed: true`; every PUT must reach the listener once, with its value,
//! and each writer's PUTs in the order that writer made them.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures_util::future::{join, join_all};
use serde_json::json;

use super::{
    delivered_everywhere, ms_between, named_percentiles, rate, start_write, stream_check,
    tracked_instance, within, Sockets, VALUE_BYTES,
};
use crate::ctx::{request_json, Ctx, Out};
use crate::stats::Summary;
use crate::ws::{padded, Counts, Delivery, Group, Kind, Tracker};

const WARMUP: usize = 10;
const PER_PUT: Duration = Duration::from_secs(15);
/// The concurrent phase fails after this long without an answer or a delivery.
const STALL: Duration = Duration::from_secs(20);
/// How often the listener's pump looks at the writers' progress.
const POLL: Duration = Duration::from_millis(100);

/// `PUT` of a string value, its answer checked.
async fn put(ctx: &Ctx, instance: &str, key: &str, value: &str) -> Result<(), String> {
    let path = format!("/api/instances/{instance}/keys/{key}");
    let answer = request_json(ctx.put_json(&path, &json!({ "value": value })))
        .await
        .map_err(|e| format!("PUT {path}: {e}"))?;
    if answer["name"] != key || answer["value"] != value || answer["changed"] != true {
        return Err(format!("PUT {path}: unexpected answer {answer}"));
    }
    Ok(())
}

/// The key and value of write `i` of a series.
fn write_of(prefix: &str, i: usize) -> (String, String) {
    (
        format!("{prefix}{i:05}"),
        padded(&format!("v{i}:"), VALUE_BYTES),
    )
}

pub async fn run(ctx: &mut Ctx, out: &mut Out, sockets: &mut Sockets) -> Result<(), String> {
    let ops = ctx.size(300, 50);
    let load = Load {
        writers: ctx.size(8, 4),
        per_writer: ctx.size(50, 10),
    };
    out.params(json!({
        "listeners": 1, "ops": ops, "warmupOps": WARMUP, "valueBytes": VALUE_BYTES,
        "concurrentWriters": load.writers, "putsPerWriter": load.per_writer,
        "perPutTimeoutMs": PER_PUT.as_millis() as u64, "stallTimeoutMs": STALL.as_millis() as u64,
    }));
    let (instance, g, t) = tracked_instance(ctx, out, sockets, "httpput", 1).await?;
    sequential(ctx, out, g, t, &instance, ops).await?;
    stream_check("sequential PUTs at the listener", &t.counts)?;

    // One tracker per writer: each writer's order is checked on its own.
    let mut trackers: Vec<Tracker> = (0..load.writers).map(|_| Tracker::new(1)).collect();
    let res = concurrent(ctx, out, g, t, &mut trackers, &instance, load).await;
    let mut counts = Counts::default();
    for w in &trackers {
        counts.merge(&w.counts);
    }
    // Their drops are counted, and their counts reported, with the others'.
    sockets.trackers.extend(trackers);
    res?;
    stream_check("concurrent PUTs at the listener", &counts)
}

/// Warm-up, then `ops` PUTs one after another, each waited for at the
/// listener: the round trip and PUT → `key_updated`. The op phase.
async fn sequential(
    ctx: &Ctx,
    out: &mut Out,
    g: &mut Group,
    t: &mut Tracker,
    instance: &str,
    ops: usize,
) -> Result<(), String> {
    let mut answered = Vec::with_capacity(ops);
    let mut delivered = Vec::with_capacity(ops);
    let cpu = out.cpu_mark(ctx);
    let total = WARMUP + ops;
    for i in 0..total {
        let (key, value) = write_of("hp", i);
        let (seq, sent) = start_write(t, &key, value.clone());
        put(ctx, instance, &key, &value).await?;
        let answer = Instant::now();
        if !delivered_everywhere(g, t, seq, within(out.deadline, PER_PUT)).await {
            out.metric("completedOps", i.saturating_sub(WARMUP));
            return Err(format!(
                "PUT \"{key}\" (op {i}): the listener did not receive key_updated within {} ms",
                PER_PUT.as_millis()
            ));
        }
        if i >= WARMUP {
            answered.push(ms_between(sent, answer));
            if let Some(at) = t.arrivals[seq][0] {
                delivered.push(ms_between(sent, at));
            }
        }
    }
    out.cpu_phase(ctx, cpu, "PUT", total, "PUT", true).await;
    out.metric("completedOps", ops);
    let answered = Summary::new(answered);
    let delivered = Summary::new(delivered);
    named_percentiles(out, "put", &answered, &[50, 99]);
    named_percentiles(out, "delivery", &delivered, &[50, 99]);
    out.metric("putRoundTripMs", answered.to_json());
    out.metric("putToListenerMs", delivered.to_json());
    Ok(())
}

/// The concurrent phase's size.
#[derive(Clone, Copy)]
struct Load {
    writers: usize,
    per_writer: usize,
}

/// What the writers tell the listener's pump, and what they measured.
#[derive(Default)]
struct Progress {
    finished_writers: Cell<usize>,
    failed: Cell<usize>,
    last_answer: Cell<Option<Instant>>,
    answered_ms: RefCell<Vec<f64>>,
    errors: RefCell<Vec<String>>,
}

/// One writer: its PUTs one after another; a failed PUT is counted and the
/// writer goes on.
async fn writer(ctx: &Ctx, instance: &str, keys: Vec<(String, String)>, p: &Progress) {
    for (key, value) in keys {
        let t0 = Instant::now();
        match put(ctx, instance, &key, &value).await {
            Ok(()) => {
                let now = Instant::now();
                p.answered_ms.borrow_mut().push(ms_between(t0, now));
                p.last_answer.set(Some(now));
            }
            Err(e) => {
                p.failed.set(p.failed.get() + 1);
                let mut errors = p.errors.borrow_mut();
                if errors.len() < 5 {
                    errors.push(e);
                }
            }
        }
    }
    p.finished_writers.set(p.finished_writers.get() + 1);
}

/// `load.writers` writers at once on distinct keys while the listener's
/// frames are read: ops/s = PUTs / (start → the later of the last answer
/// and the last delivery).
async fn concurrent(
    ctx: &Ctx,
    out: &mut Out,
    g: &mut Group,
    t: &mut Tracker,
    trackers: &mut [Tracker],
    instance: &str,
    load: Load,
) -> Result<(), String> {
    let total = load.writers * load.per_writer;
    let mut owner: HashMap<String, usize> = HashMap::with_capacity(total);
    let mut plans = Vec::with_capacity(load.writers);
    for (w, tracker) in trackers.iter_mut().enumerate() {
        let plan: Vec<(String, String)> = (0..load.per_writer)
            .map(|j| write_of(&format!("hc{w:02}-"), j))
            .collect();
        for (key, value) in &plan {
            tracker.register(key.clone(), value.clone());
            owner.insert(key.clone(), w);
        }
        plans.push(plan);
    }
    let progress = Progress::default();
    let cpu = out.cpu_mark(ctx);
    let start = Instant::now();
    for tracker in trackers.iter_mut() {
        tracker.sent_at.fill(Some(start));
    }
    let writers = join_all(
        plans
            .into_iter()
            .map(|plan| writer(ctx, instance, plan, &progress)),
    );
    let deadline = out.deadline;
    let listen = async {
        let (mut got, mut last, mut quiet_since) = (0usize, None, start);
        loop {
            let accounted = got + progress.failed.get();
            let all_written = progress.finished_writers.get() == load.writers;
            if got >= total || (all_written && accounted >= total) {
                break;
            }
            let answered = progress.last_answer.get().unwrap_or(start);
            if Instant::now() > quiet_since.max(answered) + STALL {
                break;
            }
            let Some(f) = g.recv(within(deadline, POLL)).await else {
                if Instant::now() >= deadline {
                    break;
                }
                continue;
            };
            let Kind::KeyUpdated { key, value, .. } = &f.kind else {
                continue;
            };
            let Some(&w) = owner.get(key) else {
                // Not one of this phase's keys: the sequential phase's
                // tracker says whether it is a duplicate or a stranger.
                t.on_key_updated(f.sock, key, value, f.at);
                continue;
            };
            if let Delivery::New { .. } = trackers[w].on_key_updated(f.sock, key, value, f.at) {
                got += 1;
                last = Some(f.at);
                quiet_since = f.at;
            }
        }
        (got, last)
    };
    let (_, (got, last_delivery)) = join(writers, listen).await;
    out.cpu_phase(ctx, cpu, "concurrent PUT", total, "PUT", false)
        .await;

    let failed = progress.failed.get();
    let answered = Summary::new(progress.answered_ms.take());
    out.metric("concurrentPutRoundTripMs", answered.to_json());
    out.metric("concurrentListenerReceived", got);
    out.metric("concurrentFailedPuts", failed);
    if failed > 0 {
        let errors = progress.errors.take();
        out.metric("concurrentPutErrorSamples", errors.clone());
        return Err(format!(
            "{failed} of {total} concurrent PUTs failed, first: {}",
            errors.first().cloned().unwrap_or_default()
        ));
    }
    let Some(end) = last_delivery.max(progress.last_answer.get()) else {
        return Err("no concurrent PUT was answered or delivered".into());
    };
    if got < total {
        return Err(format!(
            "the listener received {got}/{total} concurrent PUTs (deadline, or no progress for {} ms)",
            STALL.as_millis()
        ));
    }
    rate(out, "concurrent", total, start, end);
    Ok(())
}
