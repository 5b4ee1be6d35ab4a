//! `rampart edge` and `rampart up` as processes: start-up output, reload on file change
//! and SIGHUP, rejected configs, SIGTERM drain, and `--check`. Real curl as the client.

#![expect(clippy::unwrap_used, reason = "test setup panics on failure")]

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

fn rampart() -> Command {
    Command::new(env!("CARGO_BIN_EXE_rampart"))
}

/// A child process killed at drop, with its stdout lines on a channel.
struct Proc {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Proc {
    fn spawn(mut cmd: Command) -> Proc {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, lines) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        let tx2 = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let _ = tx2.send(format!("stderr: {line}"));
            }
        });
        Proc { child, lines }
    }

    /// Waits for a line containing `needle`; returns it.
    fn wait_for(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut seen = Vec::new();
        while Instant::now() < deadline {
            if let Ok(line) = self.lines.recv_timeout(Duration::from_millis(100)) {
                if line.contains(needle) {
                    return line;
                }
                seen.push(line);
            }
        }
        panic!("no line with {needle:?}; saw:\n{}", seen.join("\n"));
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn curl(args: &[&str]) -> String {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "5"])
        .args(args)
        .output()
        .expect("curl must be installed (scripts/install-deps)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A plain HTTP backend on loopback answering with a fixed body.
fn backend() -> std::net::SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            std::thread::spawn(move || {
                use std::io::Write;
                let mut buf = [0u8; 4096];
                let mut req = Vec::new();
                loop {
                    let n = s.read(&mut buf).unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    req.extend_from_slice(&buf[..n]);
                    while let Some(end) = req.windows(4).position(|w| w == b"\r\n\r\n") {
                        req.drain(..end + 4);
                        let _ =
                            s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 8\r\n\r\nbackend\n");
                    }
                }
            });
        }
    });
    addr
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn config(port: u16, admin: u16, backend: std::net::SocketAddr, tag: &str) -> String {
    format!(
        "apiVersion: rampart.dev/v1alpha1\nkind: EdgeGateway\nmetadata: {{name: cli}}\nspec:\n  admin: {{address: \"127.0.0.1:{admin}\"}}\n  listeners:\n    - name: https\n      address: \"127.0.0.1:{port}\"\n      tls:\n        certificates: [{{name: gen, selfSigned: [localhost]}}]\n        defaultCertificate: gen\n      httpRoutes:\n        - backend: b\n          responseHeaders: {{set: {{x-tag: {tag}}}}}\n  backends:\n    - name: b\n      servers: [{{address: \"{backend}\"}}]\n"
    )
}

fn tag(port: u16) -> String {
    let out = curl(&[
        "-k",
        "-D",
        "-",
        "-o",
        "/dev/null",
        &format!("https://127.0.0.1:{port}/"),
    ]);
    out.lines()
        .find_map(|l| l.strip_prefix("x-tag: "))
        .map(|t| t.trim().to_owned())
        .unwrap_or_default()
}

fn eventually(mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

#[test]
fn edge_reloads_on_file_change_and_sighup_and_drains_on_sigterm() {
    let dir = tempfile::Builder::new()
        .prefix("rampart-edge-cli-")
        .tempdir()
        .unwrap();
    let path = dir.path().join("edge.yaml");
    let (port, admin, b) = (free_port(), free_port(), backend());
    std::fs::write(&path, config(port, admin, b, "one")).unwrap();
    let mut cmd = rampart();
    cmd.args(["edge", "--config"])
        .arg(&path)
        .args(["--threads", "1"]);
    let p = Proc::spawn(cmd);
    p.wait_for("rampart edge: serving");
    let cert_line = p.wait_for("certificate");
    assert!(cert_line.contains("(self-signed) sha256 "), "{cert_line}");
    assert_eq!(tag(port), "one");

    // A file change is picked up.
    std::fs::write(&path, config(port, admin, b, "two")).unwrap();
    assert!(eventually(|| tag(port) == "two"));
    // An invalid file is reported and the running config stays.
    std::fs::write(
        &path,
        config(port, admin, b, "three").replace("backend: b", "backend: nope"),
    )
    .unwrap();
    p.wait_for("configuration rejected");
    assert_eq!(tag(port), "two");
    let m = curl(&[&format!("http://127.0.0.1:{admin}/metrics")]);
    assert!(
        m.contains("rampart_edge_reloads_total{result=\"rejected\"} 1"),
        "{m}"
    );
    // SIGHUP reloads too.
    std::fs::write(&path, config(port, admin, b, "four")).unwrap();
    p.signal("-HUP");
    assert!(eventually(|| tag(port) == "four"));
    // SIGTERM drains and exits 0.
    p.signal("-TERM");
    let mut p = p;
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(s) = p.child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "did not exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
}

#[test]
fn quick_form_and_up() {
    let b = backend();
    let port = free_port();
    let mut cmd = rampart();
    cmd.args([
        "edge",
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--backend",
        &b.to_string(),
    ]);
    let p = Proc::spawn(cmd);
    p.wait_for("rampart edge: serving");
    p.wait_for("sha256");
    assert_eq!(
        curl(&["-k", &format!("https://127.0.0.1:{port}/")]),
        "backend\n"
    );
    drop(p);

    let (port, admin) = (free_port(), free_port());
    let mut cmd = rampart();
    cmd.args([
        "up",
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--admin",
        &format!("127.0.0.1:{admin}"),
    ]);
    let p = Proc::spawn(cmd);
    let line = p.wait_for("curl -k https://");
    let url = line.trim().trim_start_matches("curl -k ").to_owned();
    let body = curl(&["-k", &url]);
    assert!(
        body.starts_with("Hello from demo, behind the Rampart edge.\nGET /\n"),
        "{body}"
    );
    assert!(curl(&[&format!("http://127.0.0.1:{admin}/healthz")]) == "ok\n");
}

#[test]
fn check_reports_every_error_with_its_place() {
    let dir = tempfile::Builder::new()
        .prefix("rampart-edge-cli-")
        .tempdir()
        .unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(
        &path,
        config(1, 2, "127.0.0.1:3".parse().unwrap(), "x")
            .replace("backend: b", "backend: nope")
            .replace("spec:\n", "spec:\n  timeouts: {idle: forever}\n"),
    )
    .unwrap();
    let out = rampart()
        .args(["edge", "--check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    let file = path.display().to_string();
    assert!(
        err.contains(&format!(
            "{file}: document 1 (line 1): EdgeGateway cli: spec.timeouts.idle: invalid duration"
        )),
        "{err}"
    );
    assert!(
        err.contains("spec.listeners[0].httpRoutes[0].backend: no backend named \"nope\""),
        "{err}"
    );
    assert!(err.contains("error: invalid input: 2 errors"), "{err}");
    let good = dir.path().join("good.yaml");
    std::fs::write(&good, config(1, 2, "127.0.0.1:3".parse().unwrap(), "x")).unwrap();
    let out = rampart()
        .args(["edge", "--check", "-c"])
        .arg(&good)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "EdgeGateway cli: ok (1 listeners, 1 backends)\n"
    );
}
