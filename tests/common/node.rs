//! One-shot Node.js scripts that check what the server sent with the npm
//! packages its clients use (the `ai` package's stream reader, `svix`).

use std::io::Write;
use std::process::{Command, Stdio};

use super::server::repo_root;

/// Runs `node args…` in the repository root with `input` on its stdin; what
/// it printed. The test fails with `refusal` and node's stderr when the
/// script fails.
pub fn run(args: &[&str], input: &str, refusal: &str) -> Vec<u8> {
    let mut child = Command::new("node")
        .args(args)
        .current_dir(repo_root())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run node");
    let mut stdin = child.stdin.take().expect("node stdin");
    stdin.write_all(input.as_bytes()).expect("write to node");
    // Closed, so that the script sees the end of its input.
    drop(stdin);
    let out = child.wait_with_output().expect("node's output");
    assert!(
        out.status.success(),
        "{refusal}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}
