//! Server CPU time from /proc: utime + stime of a process and every process
//! whose parent chain leads to it, read-only (nothing is ever signalled).

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs;
use std::time::Instant;

use serde_json::{json, Value};

/// One process as seen in one walk of /proc.
#[derive(Debug, Clone)]
pub struct ProcInfo {
    pub pid: i32,
    pub ppid: i32,
    pub comm: String,
    pub args: String,
    /// utime + stime, in clock ticks.
    pub ticks: u64,
    pub workerd: bool,
}

/// All processes of the tree at one moment, keyed by (pid, start time) so a
/// recycled pid is never mistaken for the process that had it before.
#[derive(Debug, Clone)]
pub struct Sample {
    pub at: Instant,
    pub procs: HashMap<(i32, u64), ProcInfo>,
}

/// The fields of /proc/PID/stat this tool needs.
struct Stat {
    comm: String,
    ppid: i32,
    ticks: u64,
    start: u64,
}

fn parse_stat(text: &str) -> Option<Stat> {
    // "pid (comm) state ppid ...": comm may contain spaces and parentheses,
    // so split at the last ')'.
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text.get(open + 1..close)?.to_string();
    let rest: Vec<&str> = text.get(close + 1..)?.split_whitespace().collect();
    // rest[0] is field 3 (state): field n is rest[n - 3].
    let ppid = rest.get(1)?.parse().ok()?;
    let utime: u64 = rest.get(11)?.parse().ok()?;
    let stime: u64 = rest.get(12)?.parse().ok()?;
    let start = rest.get(19)?.parse().ok()?;
    Some(Stat {
        comm,
        ppid,
        ticks: utime + stime,
        start,
    })
}

fn read_stat(pid: i32) -> Option<Stat> {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|t| parse_stat(&t))
}

fn read_args(pid: i32) -> String {
    fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| {
            let s: String = b
                .split(|c| *c == 0)
                .filter(|p| !p.is_empty())
                .map(|p| String::from_utf8_lossy(p).into_owned())
                .collect::<Vec<_>>()
                .join(" ");
            s.chars().take(200).collect()
        })
        .unwrap_or_default()
}

/// Clock ticks per second (`getconf CLK_TCK`).
pub fn clk_tck() -> Option<u64> {
    // SAFETY: sysconf only reads a configuration value.
    let v = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if v > 0 {
        Some(v as u64)
    } else {
        None
    }
}

/// Whether /proc/PID/stat can be read at all.
pub fn readable(pid: i32) -> bool {
    read_stat(pid).is_some()
}

/// Walks /proc once and keeps `root` and its descendants.
pub fn sample(root: i32) -> Sample {
    let at = Instant::now();
    let mut all: HashMap<i32, Stat> = HashMap::new();
    if let Ok(dir) = fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let name = entry.file_name();
            let Some(pid) = name.to_str().and_then(|s| s.parse::<i32>().ok()) else {
                continue;
            };
            if let Some(st) = read_stat(pid) {
                all.insert(pid, st);
            }
        }
    }
    let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
    for (pid, st) in &all {
        children.entry(st.ppid).or_default().push(*pid);
    }
    let mut procs = HashMap::new();
    let mut seen = HashSet::new();
    let mut queue = VecDeque::new();
    if all.contains_key(&root) {
        queue.push_back(root);
    }
    while let Some(pid) = queue.pop_front() {
        if !seen.insert(pid) {
            continue;
        }
        if let Some(kids) = children.get(&pid) {
            queue.extend(kids.iter().copied());
        }
        let Some(st) = all.get(&pid) else { continue };
        let args = read_args(pid);
        let workerd = st.comm.contains("workerd") || args.contains("workerd");
        procs.insert(
            (pid, st.start),
            ProcInfo {
                pid,
                ppid: st.ppid,
                comm: st.comm.clone(),
                args,
                ticks: st.ticks,
                workerd,
            },
        );
    }
    Sample { at, procs }
}

/// VmRSS of one process from /proc/PID/status, in KiB.
fn rss_kib(pid: i32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Resident memory of the `workerd` processes of a sample's tree, read now:
/// (sum of their VmRSS in KiB, how many were read).
pub fn workerd_rss_kib(s: &Sample) -> (u64, usize) {
    let rss: Vec<u64> = s
        .procs
        .values()
        .filter(|p| p.workerd)
        .filter_map(|p| rss_kib(p.pid))
        .collect();
    (rss.iter().sum(), rss.len())
}

/// CPU used by the tree between two samples.
#[derive(Debug, Clone, Default)]
pub struct Delta {
    pub total_ms: f64,
    pub workerd_ms: f64,
    pub wall_ms: f64,
    pub per_process: Vec<(ProcInfo, f64)>,
    pub new_processes: Vec<ProcInfo>,
    pub exited_processes: Vec<ProcInfo>,
}

pub fn delta(a: &Sample, b: &Sample, clk_tck: u64) -> Delta {
    let tick_ms = 1000.0 / clk_tck as f64;
    let mut d = Delta {
        wall_ms: b.at.duration_since(a.at).as_secs_f64() * 1000.0,
        ..Delta::default()
    };
    for (k, p) in &b.procs {
        let used = match a.procs.get(k) {
            Some(old) => p.ticks.saturating_sub(old.ticks),
            None => {
                d.new_processes.push(p.clone());
                p.ticks
            }
        };
        let ms = used as f64 * tick_ms;
        d.total_ms += ms;
        if p.workerd {
            d.workerd_ms += ms;
        }
        d.per_process.push((p.clone(), ms));
    }
    for (k, p) in &a.procs {
        if !b.procs.contains_key(k) {
            d.exited_processes.push(p.clone());
        }
    }
    d.per_process.sort_by(|x, y| y.1.total_cmp(&x.1));
    d
}

fn proc_json(p: &ProcInfo) -> Value {
    json!({"pid": p.pid, "ppid": p.ppid, "comm": p.comm, "args": p.args, "workerd": p.workerd})
}

impl Delta {
    pub fn to_json(&self) -> Value {
        json!({
            "cpuMs": self.total_ms,
            "workerdCpuMs": self.workerd_ms,
            "wallMs": crate::stats::r3(self.wall_ms),
            "perProcess": self.per_process.iter().map(|(p, ms)| {
                let mut v = proc_json(p);
                v["cpuMs"] = json!(ms);
                v
            }).collect::<Vec<_>>(),
            "newProcesses": self.new_processes.iter().map(proc_json).collect::<Vec<_>>(),
            "exitedProcesses": self.exited_processes.iter().map(proc_json).collect::<Vec<_>>(),
        })
    }
}

pub fn tree_json(s: &Sample) -> Value {
    let mut v: Vec<&ProcInfo> = s.procs.values().collect();
    v.sort_by_key(|p| p.pid);
    Value::Array(v.into_iter().map(proc_json).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_odd_comm() {
        let line = "4242 (my (odd) proc) S 17 4242 4242 0 -1 4194560 100 0 0 0 250 31 0 0 20 0 9 0 123456 1000 10 18446744073709551615";
        let st = parse_stat(line).expect("parsed");
        assert_eq!(st.comm, "my (odd) proc");
        assert_eq!(st.ppid, 17);
        assert_eq!(st.ticks, 281);
        assert_eq!(st.start, 123456);
    }

    #[test]
    fn samples_own_process() {
        let me = std::process::id() as i32;
        let s = sample(me);
        assert!(s.procs.keys().any(|(pid, _)| *pid == me));
        assert!(clk_tck().is_some());
        assert!(rss_kib(me).is_some_and(|kib| kib > 0));
    }
}
