//! A headless Chromium for tests: `tests/browser/driver.mjs` (playwright-core
//! driving Debian's /usr/bin/chromium) run with `node`, one JSON command per
//! line. The browser goes away when the `Browser` is dropped.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use serde_json::{json, Value};

use super::server::repo_root;

pub const CHROMIUM: &str = "/usr/bin/chromium";

pub struct Browser {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl Browser {
    pub fn launch() -> Browser {
        assert!(
            std::path::Path::new(CHROMIUM).exists(),
            "{CHROMIUM} is missing: run `bash scripts/setup.sh`"
        );
        let mut child = Command::new("node")
            .arg(repo_root().join("tests/browser/driver.mjs"))
            .current_dir(repo_root())
            .env("CHROMIUM", CHROMIUM)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("run node tests/browser/driver.mjs");
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().expect("driver stdout"));
        Browser {
            child,
            stdin,
            stdout,
        }
    }

    /// Runs one command; its answer, failing the test when it failed.
    pub fn run(&mut self, command: Value) -> Value {
        let answer = self.try_run(command.clone());
        assert_eq!(answer["ok"], true, "browser: {command} → {answer}");
        answer
    }

    /// Runs one command; its answer, `ok` or not.
    pub fn try_run(&mut self, command: Value) -> Value {
        let stdin = self.stdin.as_mut().expect("driver stdin");
        writeln!(stdin, "{command}").expect("send to the driver");
        stdin.flush().expect("flush to the driver");
        let mut line = String::new();
        self.stdout
            .read_line(&mut line)
            .expect("read from the driver");
        assert!(
            !line.is_empty(),
            "the browser driver exited (see its output above)"
        );
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("driver said {line:?}: {e}"))
    }

    pub fn open(&mut self, url: &str) -> u16 {
        self.run(json!({"cmd": "open", "url": url}))["status"]
            .as_u64()
            .unwrap_or(0) as u16
    }

    /// Waits until an element matching `selector` contains `text`; the
    /// milliseconds it took.
    pub fn wait_for_text(&mut self, selector: &str, text: &str, timeout_ms: u64) -> u64 {
        let answer = self.run(json!({
            "cmd": "waitFor", "selector": selector, "text": text, "timeoutMs": timeout_ms,
        }));
        answer["ms"].as_u64().unwrap_or(0)
    }

    pub fn wait_for(&mut self, selector: &str, timeout_ms: u64) {
        self.run(json!({"cmd": "waitFor", "selector": selector, "timeoutMs": timeout_ms}));
    }

    pub fn text(&mut self, selector: &str) -> String {
        self.run(json!({"cmd": "text", "selector": selector}))["value"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    pub fn count(&mut self, selector: &str) -> u64 {
        self.run(json!({"cmd": "count", "selector": selector}))["value"]
            .as_u64()
            .unwrap_or(0)
    }

    pub fn visible(&mut self, selector: &str) -> bool {
        self.run(json!({"cmd": "visible", "selector": selector}))["value"] == true
    }

    pub fn fill(&mut self, selector: &str, value: &str) {
        self.run(json!({"cmd": "fill", "selector": selector, "value": value}));
    }

    pub fn click(&mut self, selector: &str) {
        self.run(json!({"cmd": "click", "selector": selector}));
    }

    pub fn url(&mut self) -> String {
        self.run(json!({"cmd": "url"}))["value"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    pub fn screenshot(&mut self, path: &std::path::Path) {
        self.run(json!({"cmd": "screenshot", "path": path}));
    }

    /// Console errors, page errors and refused resources so far.
    pub fn problems(&mut self) -> Vec<String> {
        self.run(json!({"cmd": "problems"}))["value"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Closing stdin lets the driver close Chromium; kill it if it hangs.
        drop(self.stdin.take());
        for _ in 0..50 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where tests put what they make for people to look at (a screenshot):
/// the cargo target directory, never the work tree's tracked files.
pub fn output_dir() -> PathBuf {
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"));
    std::fs::create_dir_all(&dir).expect("create the output folder");
    dir
}
