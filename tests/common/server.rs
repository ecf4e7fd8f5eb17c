//! Starts the real server (`wrangler dev`, local D1 and Durable Objects)
//! for integration tests: a fresh persist directory, migrations applied,
//! a free port, readiness awaited, and a watchdog that kills the whole
//! process group when the test process goes away, even after a panic.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;

pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Builds the Worker once per test binary when no build exists
/// (scripts/test.sh builds before running the tests).
fn ensure_built() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        if repo_root().join("build/index.js").exists() {
            return;
        }
        let status = Command::new("bash")
            .arg("scripts/build.sh")
            .env("MINDCACHE_FAULTS", "1")
            .current_dir(repo_root())
            .status()
            .expect("run scripts/build.sh");
        assert!(status.success(), "scripts/build.sh failed");
    });
}

/// Removes the persist directories of test processes that are gone: the
/// servers a test binary keeps in statics are never dropped, so their
/// directories outlive it.
fn sweep_stale_persist_dirs() {
    static SWEPT: OnceLock<()> = OnceLock::new();
    SWEPT.get_or_init(|| {
        let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(pid) = name
                .strip_prefix("mindcache-test-")
                .and_then(|rest| rest.split('-').next())
            else {
                continue;
            };
            if !Path::new("/proc").join(pid).exists() {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    });
}

/// The configuration the test servers run with: `wrangler.toml` without
/// its `[build]` table. With a custom build, `wrangler dev` starts a file
/// watcher whose initial scan always ends in a rebuild and a reload of the
/// Worker; on a loaded machine that reload lands after the server already
/// answers, and resets the Durable Objects under the first requests (a
/// flaky `500`). The tests build once beforehand, so they need no build
/// step. Written beside `wrangler.toml` so its relative paths still hold.
fn test_config() -> &'static Path {
    static CONFIG: OnceLock<PathBuf> = OnceLock::new();
    CONFIG.get_or_init(|| {
        let source =
            std::fs::read_to_string(repo_root().join("wrangler.toml")).expect("read wrangler.toml");
        let mut out = String::new();
        let mut in_build = false;
        for line in source.lines() {
            let trimmed = line.trim_start();
            if trimmed.starts_with('[') {
                in_build = trimmed.starts_with("[build]");
            }
            if !in_build {
                out.push_str(line);
                out.push('\n');
            }
        }
        assert!(
            !out.contains("[build]"),
            "wrangler.toml's [build] table stayed"
        );
        let path = repo_root().join(".wrangler-test.toml");
        // Several test binaries may write it at once: same text, atomic rename.
        let tmp = repo_root().join(format!(".wrangler-test.toml.{}", std::process::id()));
        std::fs::write(&tmp, out).expect("write the test configuration");
        std::fs::rename(&tmp, &path).expect("place the test configuration");
        path
    })
}

/// How a test wants its server: the mode and any variables or secrets.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct ServerOptions {
    vars: Vec<(String, String)>,
}

impl ServerOptions {
    pub fn development() -> Self {
        ServerOptions::default().var("ENVIRONMENT", "development")
    }

    pub fn production() -> Self {
        ServerOptions::default().var("ENVIRONMENT", "production")
    }

    pub fn var(mut self, name: &str, value: &str) -> Self {
        self.vars.retain(|(n, _)| n != name);
        self.vars.push((name.to_string(), value.to_string()));
        self
    }
}

/// The server of this test binary for `options`: started on first use and
/// then shared by every test asking for the same options (servers with
/// different options start independently, in parallel).
pub fn shared(options: ServerOptions) -> &'static TestServer {
    static SERVERS: OnceLock<Mutex<HashMap<ServerOptions, &'static OnceLock<TestServer>>>> =
        OnceLock::new();
    let cell: &'static OnceLock<TestServer> = SERVERS
        .get_or_init(Mutex::default)
        .lock()
        .expect("shared servers")
        .entry(options.clone())
        .or_insert_with(|| Box::leak(Box::default()));
    cell.get_or_init(|| TestServer::start(options))
}

/// The shared development-mode server without extra variables.
pub fn dev_server() -> &'static TestServer {
    shared(ServerOptions::development())
}

/// The shared production-mode server without extra variables.
pub fn prod_server() -> &'static TestServer {
    shared(ServerOptions::production())
}

pub struct TestServer {
    pub port: u16,
    pub persist_dir: PathBuf,
    options: ServerOptions,
    watchdog: Option<(Child, ChildStdin)>,
}

impl TestServer {
    /// A server on a fresh, migrated persist directory.
    pub fn start(options: ServerOptions) -> TestServer {
        ensure_built();
        sweep_stale_persist_dirs();
        let persist_dir = std::env::temp_dir().join(super::unique_id(&format!(
            "mindcache-test-{}",
            std::process::id()
        )));
        std::fs::create_dir_all(&persist_dir).expect("create persist dir");
        wrangler(&[
            "d1",
            "migrations",
            "apply",
            "DB",
            "--local",
            "--persist-to",
            persist_dir.to_str().expect("utf-8 temp path"),
        ]);
        let mut server = TestServer {
            port: 0,
            persist_dir,
            options,
            watchdog: None,
        };
        server.launch();
        server
    }

    /// Restarts on the same persist directory with other options.
    pub fn restart_with(&mut self, options: ServerOptions) {
        self.options = options;
        self.restart();
    }

    /// Stops the server and starts it again on the same persist directory.
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    /// The Durable Object ids of the instances that have a storage file
    /// (`…/MindCacheInstance/<64 hex>.sqlite` under the persist directory).
    pub fn object_ids(&self) -> std::collections::HashSet<String> {
        let mut ids = std::collections::HashSet::new();
        let mut stack = vec![self.persist_dir.clone()];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for path in entries.flatten().map(|e| e.path()) {
                if path.is_dir() {
                    stack.push(path);
                    continue;
                }
                let in_namespace = path.to_string_lossy().contains("MindCacheInstance");
                let stem = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| n.strip_suffix(".sqlite"));
                if let Some(stem) = stem.filter(|_| in_namespace) {
                    if stem.len() == 64 && stem.bytes().all(|b| b.is_ascii_hexdigit()) {
                        ids.insert(stem.to_string());
                    }
                }
            }
        }
        ids
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    /// The same server addressed as `localhost`, which is what development
    /// mode requires of the request's host.
    pub fn local_url(&self, path: &str) -> String {
        format!("http://localhost:{}{}", self.port, path)
    }

    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://localhost:{}{}", self.port, path)
    }

    /// Runs SQL against this server's local D1 (test-only seeding), as one
    /// transaction, through the server's own D1 binding (a route only
    /// test builds have, src/seed.rs). A second process writing the
    /// database while the server ran made the server's writes fail now and
    /// then; through the binding the seed waits its turn like any write.
    pub fn d1_execute(&self, sql: &str) {
        let body = serde_json::to_string(&split_statements(sql)).expect("statements as JSON");
        let (status, answer) = http_post(self.port, "/__test/d1", &body)
            .unwrap_or_else(|e| panic!("seed request to port {}: {e}", self.port));
        assert_eq!(status, 204, "seeding failed ({status}): {answer}\n{sql}");
    }

    /// The file `wrangler dev` writes its output to, the Worker's log
    /// lines included.
    pub fn log_path(&self) -> PathBuf {
        self.persist_dir.join(format!("wrangler-{}.log", self.port))
    }

    /// Everything the server has logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// The server's structured log lines so far (docs/operations.md): the
    /// lines of its output that are JSON objects with an `event`.
    /// `wrangler dev` prints `console.error` and `console.warn` lines
    /// decorated (`✘ [ERROR] {…}`, in colour): the JSON object is taken
    /// from within the line.
    pub fn log_lines(&self) -> Vec<Value> {
        self.log_text()
            .lines()
            .filter_map(|l| {
                let start = l.find("{\"ts\":")?;
                let end = l.rfind('}')?;
                serde_json::from_str::<Value>(l.get(start..=end)?).ok()
            })
            .filter(|v| v.get("event").is_some())
            .collect()
    }

    /// Waits (up to 5 s) for a log line that `matches`, and returns it.
    pub fn wait_for_log(&self, what: &str, matches: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(line) = self.log_lines().into_iter().find(|l| matches(l)) {
                return line;
            }
            if Instant::now() > deadline {
                panic!(
                    "no log line {what}; the server's lines:\n{}",
                    self.log_lines()
                        .iter()
                        .map(Value::to_string)
                        .collect::<Vec<_>>()
                        .join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The rows a query over this server's local D1 answers.
    ///
    /// Read straight from the local D1's SQLite file, read-only: a second
    /// `wrangler d1 execute` process opening the database while the server
    /// writes to it made the server's own D1 calls fail now and then
    /// ("internal error"), where a read-only reader of the WAL-mode file
    /// never blocks the server's writes.
    pub fn d1_rows(&self, sql: &str) -> Vec<Value> {
        use rusqlite::types::ValueRef;
        let conn = rusqlite::Connection::open_with_flags(
            self.d1_file(),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .expect("open the local D1 database");
        conn.busy_timeout(Duration::from_secs(10))
            .expect("busy timeout");
        let mut stmt = conn.prepare(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
        let names: Vec<String> = stmt.column_names().map(str::to_owned).collect();
        let rows = stmt
            .query_map([], |row| {
                let mut object = serde_json::Map::new();
                for (i, name) in names.iter().enumerate() {
                    let value = match row.get_ref(i)? {
                        ValueRef::Null => Value::Null,
                        ValueRef::Integer(n) => Value::from(n),
                        ValueRef::Real(f) => Value::from(f),
                        ValueRef::Text(t) => Value::from(String::from_utf8_lossy(t).into_owned()),
                        ValueRef::Blob(b) => Value::from(b.to_vec()),
                    };
                    object.insert(name.clone(), value);
                }
                Ok(Value::Object(object))
            })
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .collect::<Result<Vec<_>, _>>()
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        rows
    }

    /// The local D1 database's SQLite file under the persist directory.
    fn d1_file(&self) -> PathBuf {
        let dir = self.persist_dir.join("v3/d1/miniflare-D1DatabaseObject");
        std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .flatten()
            .map(|e| e.path())
            .find(|p| {
                p.extension().is_some_and(|x| x == "sqlite")
                    && p.file_name().is_some_and(|n| n != "metadata.sqlite")
            })
            .unwrap_or_else(|| panic!("no D1 database file in {}", dir.display()))
    }

    /// Starts wrangler dev on fresh ports. A port picked here can be taken
    /// by another server starting at the same moment (the runtime then
    /// fails to bind, and says so): that attempt is stopped and another
    /// made on other ports.
    fn launch(&mut self) {
        let mut failures = Vec::new();
        for _ in 0..3 {
            match self.try_launch() {
                Ok(()) => return,
                Err(log) => failures.push(log),
            }
        }
        panic!(
            "wrangler dev did not become ready in 3 attempts; the last log:\n{}",
            failures.pop().unwrap_or_default()
        );
    }

    fn try_launch(&mut self) -> Result<(), String> {
        let port = free_port();
        let inspector = free_port();
        let env_file = self.persist_dir.join("test.env");
        let mut contents = String::new();
        for (name, value) in &self.options.vars {
            contents.push_str(&format!("{name}={value}\n"));
        }
        std::fs::write(&env_file, contents).expect("write env file");

        let wrangler_bin = repo_root().join("node_modules/.bin/wrangler");
        let log = self.persist_dir.join(format!("wrangler-{port}.log"));
        // The watchdog shell leads its own process group; when our end of
        // its stdin closes (test finished, panicked or was killed) it
        // stops wrangler and everything wrangler started.
        let script = format!(
            r#"{wrangler} dev --config '{config}' --ip 127.0.0.1 --port {port} --inspector-port {inspector} \
                --persist-to '{persist}' --env-file '{env}' --show-interactive-dev-session=false \
                --log-level log > '{log}' 2>&1 &
            w=$!
            cat > /dev/null
            kill -TERM $w 2>/dev/null
            for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 $w 2>/dev/null || break; sleep 0.3; done
            kill -KILL -- -$$ 2>/dev/null"#,
            wrangler = wrangler_bin.display(),
            config = test_config().display(),
            persist = self.persist_dir.display(),
            env = env_file.display(),
            log = log.display(),
        );
        let mut child = {
            use std::os::unix::process::CommandExt;
            Command::new("bash")
                .arg("-c")
                .arg(script)
                .current_dir(repo_root())
                .env("MINDCACHE_SKIP_BUILD", "1")
                .env("WRANGLER_SEND_METRICS", "false")
                .env("CI", "true")
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .process_group(0)
                .spawn()
                .expect("spawn wrangler dev")
        };
        let stdin = child.stdin.take().expect("watchdog stdin");
        self.port = port;
        self.watchdog = Some((child, stdin));

        // Generous: on a loaded two-core machine wrangler can take over a minute.
        let deadline = Instant::now() + Duration::from_secs(180);
        while Instant::now() < deadline {
            if http_get_status(port, "/health") == Some(200) {
                return Ok(());
            }
            let output = std::fs::read_to_string(&log).unwrap_or_default();
            if output.contains("runtime failed to start")
                || output.contains("Address already in use")
            {
                self.stop();
                return Err(output);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let output = std::fs::read_to_string(&log).unwrap_or_default();
        self.stop();
        panic!("wrangler dev did not become ready on port {port} within 180 s; its log:\n{output}");
    }

    fn stop(&mut self) {
        if let Some((mut child, stdin)) = self.watchdog.take() {
            drop(stdin);
            let _ = child.wait();
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.persist_dir);
    }
}

/// Runs the project's wrangler and returns its stdout, panicking on failure.
fn wrangler(args: &[&str]) -> String {
    try_wrangler(args).unwrap_or_else(|e| panic!("{e}"))
}

/// Runs the project's wrangler: its stdout, or what it said on failure.
fn try_wrangler(args: &[&str]) -> Result<String, String> {
    let out = Command::new(repo_root().join("node_modules/.bin/wrangler"))
        .args(args)
        .current_dir(repo_root())
        .env("MINDCACHE_SKIP_BUILD", "1")
        .env("WRANGLER_SEND_METRICS", "false")
        .env("CI", "true")
        .stdin(Stdio::null())
        .output()
        .expect("run wrangler");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(stdout)
    } else {
        Err(format!(
            "wrangler {args:?} failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Runs the project's wrangler with arbitrary arguments (for tests of the
/// tooling itself, such as the dry-run deploy).
pub fn run_wrangler(args: &[&str]) -> String {
    wrangler(args)
}

/// The project's wrangler: its stdout, or what it said when it failed.
pub fn try_run_wrangler(args: &[&str]) -> Result<String, String> {
    try_wrangler(args)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The statements of a `;`-separated SQL text, semicolons inside quoted
/// strings left alone.
fn split_statements(sql: &str) -> Vec<String> {
    let mut statements = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    for c in sql.chars() {
        match c {
            '\'' => quoted = !quoted,
            ';' if !quoted => {
                statements.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    statements.push(current);
    statements
        .into_iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// A blocking POST (callable from sync and async tests alike): the status
/// and the body.
fn http_post(port: u16, path: &str, body: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: localhost:{port}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    Ok((status, body.to_string()))
}

/// A dependency-free readiness probe (no async runtime needed).
fn http_get_status(port: u16, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost:{port}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = [0u8; 64];
    let n = stream.read(&mut buf).ok()?;
    let head = std::str::from_utf8(&buf[..n]).ok()?;
    head.split_whitespace().nth(1)?.parse().ok()
}
