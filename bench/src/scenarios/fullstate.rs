//! `fullstate`: a client that re-sends its whole state (one `set` per key)
//! whenever one key changes. 1 writer + 5 listeners; each round changes one
//! key (round-robin) and sends all keys in key order. Measures how fast the
//! changed key reaches every listener and how many `key_updated` each
//! listener gets per round (1 when the server drops sets that change nothing).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::json;

use super::{instance, ms_between, open_synced, percentiles, within, Sockets};
use crate::ctx::{Better, Ctx, Out};
use crate::stats::{r3, Summary};
use crate::ws::{padded, set_frame, Kind};

const LISTENERS: usize = 5;
const VALUE_BYTES: usize = 100;
const QUIET: Duration = Duration::from_millis(300);
const CAP: Duration = Duration::from_secs(10);
/// How long a round may take before the changed key reached everyone.
const CHANGED_TIMEOUT: Duration = Duration::from_secs(30);

fn key(i: usize) -> String {
    format!("fs{i:04}")
}

fn value(i: usize, version: usize) -> String {
    padded(&format!("{}:v{version}:", key(i)), VALUE_BYTES)
}

struct RoundStats {
    changed_ms: Vec<f64>,
    settle_ms: Vec<f64>,
    wall_ms: Vec<f64>,
    send_loop_ms: Vec<f64>,
    msgs_per_listener: Vec<f64>,
    listener_bytes: Vec<f64>,
    writer_echoes: Vec<f64>,
    ended_by: HashMap<&'static str, usize>,
}

pub async fn run(ctx: &mut Ctx, out: &mut Out, sockets: &mut Sockets) -> Result<(), String> {
    let keys = ctx.size(200, 40);
    let rounds = ctx.size(50, 10);
    out.params(json!({
        "keys": keys, "rounds": rounds, "listeners": LISTENERS, "valueBytes": VALUE_BYTES,
        "quietMs": QUIET.as_millis() as u64, "capMs": CAP.as_millis() as u64,
    }));
    let instance = instance(ctx, out, "fullstate").await?;
    let g = sockets.group();
    let cpu = out.cpu_mark(ctx);
    let (n, wait) = (LISTENERS + 1, Duration::from_secs(30));
    open_synced(ctx, out, g, &instance, n, n, wait).await?;
    out.cpu_phase(ctx, cpu, "connect", LISTENERS + 1, "connection", false)
        .await;

    let index: HashMap<String, usize> = (0..keys).map(|i| (key(i), i)).collect();
    let mut version = vec![0usize; keys];
    let mut current: Vec<String> = (0..keys).map(|i| value(i, 0)).collect();
    let mut mismatches = 0u64;
    let mut unknown = 0u64;

    // Preload: all keys at once; wait until every listener has all of them
    // with the right values, then for listener quiet.
    let cpu = out.cpu_mark(ctx);
    let start = Instant::now();
    let frames: Vec<String> = (0..keys).map(|i| set_frame(&key(i), &current[i])).collect();
    g.send_batch(0, frames).await?;
    let mut have = vec![vec![false; keys]; LISTENERS + 1];
    let mut have_n = vec![0usize; LISTENERS + 1];
    let mut preload_msgs = 0u64;
    let all_have = |n: &[usize]| n[1..].iter().all(|c| *c >= keys);
    let mut last_msg = Instant::now();
    let deadline = within(out.deadline, Duration::from_secs(60));
    while !all_have(&have_n) {
        let Some(f) = g.recv(deadline).await else {
            return Err(format!(
                "preload: listeners have {:?} of {keys} keys after 60 s",
                &have_n[1..]
            ));
        };
        if let Kind::KeyUpdated { key, value, .. } = &f.kind {
            let Some(&i) = index.get(key) else {
                unknown += 1;
                continue;
            };
            if f.sock == 0 {
                continue;
            }
            preload_msgs += 1;
            last_msg = f.at;
            if value.as_str() == Some(current[i].as_str()) {
                if !have[f.sock][i] {
                    have[f.sock][i] = true;
                    have_n[f.sock] += 1;
                }
            } else {
                mismatches += 1;
            }
        }
    }
    let preload_ms = ms_between(start, last_msg);
    // Quiet: nothing to a listener for 300 ms (bounded by the 10 s cap).
    let cap = within(out.deadline, CAP);
    loop {
        let until = (last_msg + QUIET).max(Instant::now()).min(cap);
        match g.recv(until).await {
            None => break,
            Some(f) => {
                if let Kind::KeyUpdated { .. } = f.kind {
                    if f.sock != 0 {
                        preload_msgs += 1;
                        last_msg = f.at;
                    }
                }
            }
        }
        if Instant::now() >= cap {
            out.warn("preload: listeners never went quiet for 300 ms within 10 s");
            break;
        }
    }
    out.ms("preloadMs", Some(preload_ms));
    out.metric(
        "preloadExtraMsgs",
        preload_msgs.saturating_sub((keys * LISTENERS) as u64),
    );
    out.cpu_phase(ctx, cpu, "preload", keys, "set", false).await;

    // Rounds.
    let cpu = out.cpu_mark(ctx);
    let mut st = RoundStats {
        changed_ms: Vec::new(),
        settle_ms: Vec::new(),
        wall_ms: Vec::new(),
        send_loop_ms: Vec::new(),
        msgs_per_listener: Vec::new(),
        listener_bytes: Vec::new(),
        writer_echoes: Vec::new(),
        ended_by: HashMap::new(),
    };
    let mut done_rounds = 0;
    let mut result = Ok(());
    for r in 0..rounds {
        let ck = r % keys;
        version[ck] += 1;
        current[ck] = value(ck, version[ck]);
        let new_value = current[ck].clone();
        let start = Instant::now();
        let frames: Vec<String> = (0..keys).map(|i| set_frame(&key(i), &current[i])).collect();
        if let Err(e) = g.send_batch(0, frames).await {
            result = Err(format!("round {r}: {e}"));
            break;
        }
        st.send_loop_ms.push(ms_between(start, Instant::now()));

        let mut msgs = [0usize; LISTENERS + 1];
        let mut bytes = 0usize;
        let mut changed_at: [Option<Instant>; LISTENERS + 1] = [None; LISTENERS + 1];
        let mut last_listener: Option<Instant> = None;
        let changed_deadline = within(out.deadline, CHANGED_TIMEOUT);
        let ended_by;
        loop {
            let all_changed = changed_at[1..].iter().all(Option::is_some);
            let changed_done = changed_at[1..].iter().flatten().max().copied();
            if all_changed && msgs[1..].iter().all(|m| *m >= keys) {
                ended_by = "allKeys";
                break;
            }
            let until = match changed_done {
                Some(c) if all_changed => {
                    let quiet_end = (last_listener.unwrap_or(c) + QUIET).max(Instant::now());
                    quiet_end.min(c + CAP).min(out.deadline)
                }
                _ => changed_deadline,
            };
            let Some(f) = g.recv(until).await else {
                if !all_changed {
                    let n = changed_at[1..].iter().flatten().count();
                    result = Err(format!(
                        "round {r}: changed key \"{}\" reached only {n}/{LISTENERS} listeners within {} ms",
                        key(ck),
                        CHANGED_TIMEOUT.as_millis()
                    ));
                    ended_by = "timeout";
                } else if Instant::now() >= changed_done.unwrap_or(start) + CAP {
                    ended_by = "cap";
                } else {
                    ended_by = "quiet";
                }
                break;
            };
            let Kind::KeyUpdated {
                key: k,
                value: v,
                bytes: b,
            } = &f.kind
            else {
                continue;
            };
            let Some(&i) = index.get(k) else {
                unknown += 1;
                continue;
            };
            msgs[f.sock.min(LISTENERS)] += 1;
            if v.as_str() != Some(current[i].as_str()) {
                mismatches += 1;
            }
            if f.sock == 0 {
                continue;
            }
            bytes += b;
            last_listener = Some(f.at);
            if i == ck && v.as_str() == Some(new_value.as_str()) {
                changed_at[f.sock].get_or_insert(f.at);
            }
        }
        *st.ended_by.entry(ended_by).or_default() += 1;
        if result.is_err() {
            break;
        }
        if ended_by == "cap" {
            out.warn(format!(
                "round {r} was capped 10 s after the changed key arrived"
            ));
        }
        let end = Instant::now();
        if let Some(c) = changed_at[1..].iter().flatten().max() {
            st.changed_ms.push(ms_between(start, *c));
        }
        if let Some(l) = last_listener {
            st.settle_ms.push(ms_between(start, l));
        }
        st.wall_ms.push(ms_between(start, end));
        let per: f64 = msgs[1..].iter().sum::<usize>() as f64 / LISTENERS as f64;
        st.msgs_per_listener.push(per);
        st.listener_bytes.push(bytes as f64);
        st.writer_echoes.push(msgs[0] as f64);
        done_rounds += 1;
    }
    out.cpu_phase(ctx, cpu, "rounds", done_rounds * keys, "set", true)
        .await;

    let changed = Summary::new(st.changed_ms);
    let per = Summary::new(st.msgs_per_listener);
    let bytes = Summary::new(st.listener_bytes);
    out.metric("completedRounds", done_rounds);
    percentiles(out, &changed, &[50, 95]);
    out.metric("changedKeyAllListenersMs", changed.to_json());
    out.metric("roundSettleMs", Summary::new(st.settle_ms).to_json());
    out.metric("roundWallMs", Summary::new(st.wall_ms).to_json());
    out.metric("sendLoopMs", Summary::new(st.send_loop_ms).to_json());
    out.metric("msgs_per_round_per_listener", per.mean().map(r3));
    out.metric("msgsPerRoundPerListenerMin", per.min());
    out.metric("msgsPerRoundPerListenerMax", per.max());
    out.metric("listener_bytes_per_round", bytes.mean().map(r3));
    out.metric(
        "writerEchoesPerRound",
        Summary::new(st.writer_echoes).mean().map(r3),
    );
    out.metric("roundsEndedBy", json!(st.ended_by));
    out.metric("valueMismatches", mismatches);
    out.counts.value_mismatches += mismatches;
    out.counts.unmatched_key_updates += unknown;
    out.head(
        "msgs_per_round_per_listener",
        per.mean(),
        "msgs",
        Better::Lower,
    );
    out.head("listener_bytes_per_round", bytes.mean(), "B", Better::Lower);
    result
}
