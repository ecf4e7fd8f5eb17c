//! `latency`: 1 writer + 10 listeners on one instance, sequential sets: the
//! next set is sent only when all 11 sockets got the previous key_updated.

use std::time::{Duration, Instant};

use serde_json::json;

use super::{ms_between, percentiles, set_everywhere, tracked_instance, Sockets, VALUE_BYTES};
use crate::ctx::{Ctx, Out};
use crate::stats::Summary;
use crate::ws::padded;

const LISTENERS: usize = 10;
const WARMUP: usize = 10;
const PER_SET: Duration = Duration::from_secs(15);

pub async fn run(ctx: &mut Ctx, out: &mut Out, sockets: &mut Sockets) -> Result<(), String> {
    let ops = ctx.size(500, 100);
    out.params(json!({
        "listeners": LISTENERS, "ops": ops, "warmupOps": WARMUP, "valueBytes": VALUE_BYTES,
        "perSetTimeoutMs": PER_SET.as_millis() as u64,
    }));
    let n = LISTENERS + 1;
    let (_, g, t) = tracked_instance(ctx, out, sockets, "latency", n).await?;

    let mut last = Vec::with_capacity(ops);
    let mut echo = Vec::with_capacity(ops);
    let mut first = Vec::with_capacity(ops);
    let cpu = out.cpu_mark(ctx);
    let phase_start = Instant::now();
    let total = WARMUP + ops;
    for i in 0..total {
        let key = format!("lat{i:05}");
        let value = padded(&format!("v{i}:"), VALUE_BYTES);
        let set = set_everywhere(g, t, &key, value, out.deadline, PER_SET).await?;
        let (seq, sent) = (set.seq, set.sent);
        if !set.delivered {
            out.metric("completedOps", i.saturating_sub(WARMUP));
            return Err(format!(
                "set \"{key}\" (op {i}): only {}/{n} sockets received key_updated within {} ms",
                t.delivered[seq],
                PER_SET.as_millis()
            ));
        }
        if i >= WARMUP {
            let (f, l) = t.first_last(seq);
            if let (Some(f), Some(l)) = (f, l) {
                first.push(ms_between(sent, f));
                last.push(ms_between(sent, l));
            }
            if let Some(e) = t.arrivals[seq][0] {
                echo.push(ms_between(sent, e));
            }
        }
    }
    let wall = phase_start.elapsed().as_secs_f64();
    out.cpu_phase(ctx, cpu, "sets", total, "set", true).await;

    let last = Summary::new(last);
    out.metric("completedOps", ops);
    percentiles(out, &last, &[50, 95, 99]);
    out.metric("sendToLastDeliveryMs", last.to_json());
    out.metric("sendToWriterEchoMs", Summary::new(echo).to_json());
    out.metric("sendToFirstDeliveryMs", Summary::new(first).to_json());
    out.metric("opsPerSec", crate::stats::r3(total as f64 / wall));
    Ok(())
}
