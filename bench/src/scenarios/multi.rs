//! `multi` and `multi100`: many instances with a few clients each, all
//! running sequential sets at the same time (each instance's next set after
//! its sockets all got the previous one). The two differ only in their
//! [`Shape`].

use std::time::{Duration, Instant};

use serde_json::json;

use super::{
    ensure_fds, ms_between, percentiles, set_everywhere, stream_check, within, Sockets, VALUE_BYTES,
};
use crate::ctx::{Better, Ctx, Out};
use crate::stats::{r3, Summary};
use crate::ws::{padded, Group, Tracker};

/// How many instances, sockets on each and sets per instance; (full,
/// quick) pairs.
pub struct Shape {
    name: &'static str,
    instances: (usize, usize),
    clients: usize,
    sets: (usize, usize),
}

/// 50 instances × 4 sockets.
pub const MULTI: Shape = Shape {
    name: "multi",
    instances: (50, 10),
    clients: 4,
    sets: (100, 20),
};

/// 100 instances × 10 sockets, every instance with its writer.
pub const MULTI100: Shape = Shape {
    name: "multi100",
    instances: (100, 20),
    clients: 10,
    sets: (50, 10),
};

const CONNECT_INSTANCES_AT_ONCE: usize = 5;
const PER_SET: Duration = Duration::from_secs(30);

pub async fn run(
    ctx: &mut Ctx,
    out: &mut Out,
    sockets: &mut Sockets,
    shape: &Shape,
) -> Result<(), String> {
    let instances = ctx.size(shape.instances.0, shape.instances.1);
    let sets = ctx.size(shape.sets.0, shape.sets.1);
    let clients = shape.clients;
    ensure_fds(out, instances * clients)?;
    out.params(json!({
        "instances": instances, "clientsPerInstance": clients, "setsPerInstance": sets,
        "valueBytes": VALUE_BYTES, "perSetTimeoutMs": PER_SET.as_millis() as u64,
    }));
    let mut ids = Vec::with_capacity(instances);
    for k in 0..instances {
        ids.push(ctx.instance(&format!("{}-{k}", shape.name)).await?);
    }
    for _ in 0..instances {
        sockets.tracked(clients);
    }
    let Sockets { groups, trackers } = sockets;
    let cpu = out.cpu_mark(ctx);
    let t0 = Instant::now();
    let target = ctx.target.clone();
    let deadline = within(out.deadline, Duration::from_secs(120));
    for chunk in groups
        .iter_mut()
        .zip(ids)
        .collect::<Vec<_>>()
        .chunks_mut(CONNECT_INSTANCES_AT_ONCE)
    {
        let opening = chunk.iter_mut().map(|(g, id)| {
            let target = &target;
            async move {
                let socks = g.connect(target, id, clients, clients).await?;
                g.wait_synced(&socks, deadline).await
            }
        });
        for r in futures_util::future::join_all(opening).await {
            r?;
        }
    }
    out.ms("connectAllMs", Some(ms_between(t0, Instant::now())));
    out.cpu_phase(
        ctx,
        cpu,
        "connect",
        groups.len() * clients,
        "connection",
        false,
    )
    .await;

    let cpu = out.cpu_mark(ctx);
    let start = Instant::now();
    let deadline = out.deadline;
    let runs = groups
        .iter_mut()
        .zip(trackers.iter_mut())
        .enumerate()
        .map(|(k, (g, t))| drive(g, t, k, sets, deadline));

    let results = futures_util::future::join_all(runs).await;
    let wall = start.elapsed().as_secs_f64();
    let mut all = Vec::new();
    let mut first_err = None;
    let mut failed = 0;
    for (lat, r) in results {
        all.extend(lat);
        if let Err(e) = r {
            failed += 1;
            first_err.get_or_insert(e);
        }
    }
    let done = all.len();
    out.cpu_phase(ctx, cpu, "sets", done, "set", true).await;

    let s = Summary::new(all);
    let ops_per_sec = done as f64 / wall;
    out.metric("completedSets", done);
    out.ms("wallMs", Some(wall * 1000.0));
    out.metric("opsPerSec", r3(ops_per_sec));
    out.head("ops_per_s", Some(ops_per_sec), "ops/s", Better::Higher);
    percentiles(out, &s, &[50, 99]);
    out.metric("sendToLastDeliveryMs", s.to_json());
    if let Some(e) = first_err {
        return Err(format!("{failed} instances failed; first: {e}"));
    }
    trackers
        .iter()
        .enumerate()
        .try_for_each(|(k, t)| stream_check(&format!("instance {k}"), &t.counts))
}

/// One instance's sequential sets; returns send → last delivery per set.
async fn drive(
    g: &mut Group,
    t: &mut Tracker,
    k: usize,
    sets: usize,
    deadline: Instant,
) -> (Vec<f64>, Result<(), String>) {
    let mut lat = Vec::with_capacity(sets);
    for i in 0..sets {
        let key = format!("m{k}-{i:04}");
        let value = padded(&format!("v{k}.{i}:"), VALUE_BYTES);
        let set = match set_everywhere(g, t, &key, value, deadline, PER_SET).await {
            Ok(set) => set,
            Err(e) => return (lat, Err(format!("instance {k}: {e}"))),
        };
        if !set.delivered {
            return (
                lat,
                Err(format!(
                    "instance {k}, set \"{key}\": only {}/{} sockets received key_updated in time",
                    t.delivered[set.seq],
                    g.conns.len()
                )),
            );
        }
        if let (_, Some(l)) = t.first_last(set.seq) {
            lat.push(ms_between(set.sent, l));
        }
    }
    (lat, Ok(()))
}
