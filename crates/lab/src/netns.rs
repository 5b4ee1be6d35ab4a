//! Entering network namespaces from a thread, and running `ip` in them.

use std::fs::File;
use std::io::Write;
use std::process::{Command, Stdio};

use nix::sched::{CloneFlags, setns};

use crate::LabError;

/// The path of a named network namespace.
pub fn path(name: &str) -> String {
    format!("/run/netns/{name}")
}

/// An open handle on a named network namespace.
#[derive(Debug)]
pub struct NsHandle {
    name: String,
    file: File,
}

impl NsHandle {
    /// Opens `/run/netns/<name>`.
    pub fn open(name: &str) -> Result<Self, LabError> {
        let file = File::open(path(name))
            .map_err(|e| LabError::Setup(format!("open netns {name}: {e}")))?;
        Ok(NsHandle {
            name: name.to_owned(),
            file,
        })
    }

    /// Moves the calling thread into this namespace. Sockets the thread creates from
    /// then on belong to it (and stay there whatever thread uses them later).
    pub fn enter(&self) -> Result<(), LabError> {
        setns(&self.file, CloneFlags::CLONE_NEWNET)
            .map_err(|e| LabError::Setup(format!("enter netns {}: {e}", self.name)))
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// Runs `f` on a new thread inside namespace `ns`, and returns its result.
pub fn run_in<T: Send>(ns: &NsHandle, f: impl FnOnce() -> T + Send) -> Result<T, LabError> {
    std::thread::scope(|s| {
        s.spawn(|| {
            ns.enter()?;
            Ok(f())
        })
        .join()
        .map_err(|_| LabError::Setup("a setup thread panicked".to_owned()))?
    })
}

/// Runs `ip [-n ns] -batch -` with `lines`; the error quotes `ip`'s complaint.
pub fn ip_batch(netns: Option<&str>, lines: &[String]) -> Result<(), LabError> {
    if lines.is_empty() {
        return Ok(());
    }
    let mut cmd = Command::new("ip");
    if let Some(ns) = netns {
        cmd.args(["-n", ns]);
    }
    cmd.args(["-batch", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|e| LabError::Setup(format!("cannot run ip: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        let text = lines.join("\n") + "\n";
        stdin
            .write_all(text.as_bytes())
            .map_err(|e| LabError::Setup(format!("ip -batch: {e}")))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| LabError::Setup(format!("ip -batch: {e}")))?;
    if !out.status.success() {
        return Err(LabError::Setup(format!(
            "ip {}-batch failed: {}",
            netns.map(|n| format!("-n {n} ")).unwrap_or_default(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// Writes a sysctl of the calling thread's network namespace.
pub fn sysctl(key: &str, value: &str) -> Result<(), LabError> {
    let path = format!("/proc/sys/{}", key.replace('.', "/"));
    std::fs::write(&path, value).map_err(|e| LabError::Setup(format!("sysctl {key}={value}: {e}")))
}
