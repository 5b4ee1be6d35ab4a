//! Shared helpers of the privileged integration tests.

#![allow(
    dead_code,
    clippy::print_stderr,
    reason = "each test file uses a part of the helpers; skips are reported on stderr"
)]

use std::path::PathBuf;
use std::process::Command;

/// True when this process may build network namespaces and nftables tables. When it
/// may not, the test is skipped, except under CI (`CI=true`), where it fails loudly.
pub(crate) fn privileged(test: &str) -> bool {
    let root = nix::unistd::geteuid().is_root();
    let tools = ["nft", "ip"].iter().all(|t| {
        Command::new(t)
            .arg(if *t == "ip" { "-V" } else { "--version" })
            .output()
            .is_ok_and(|o| o.status.success())
    });
    if root && tools {
        return true;
    }
    let why = if root {
        "nft or ip missing (run scripts/install-deps)"
    } else {
        "not root"
    };
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{test}: cannot run under CI: {why}"
    );
    eprintln!("{test}: skipped: {why}");
    false
}

/// The conformance data: `$RAMPART_CONFORMANCE`, or the nearest `shared/conformance`
/// beside the repository or one of its parents, or else the repository's own copy in
/// `tests/conformance`.
pub(crate) fn conformance_dir() -> Option<PathBuf> {
    if let Ok(dir) = std::env::var("RAMPART_CONFORMANCE") {
        return Some(PathBuf::from(dir));
    }
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .map(|a| a.join("shared/conformance"))
        .find(|d| d.is_dir())
        .or_else(|| {
            // The copy kept in the repository, for a clone on its own.
            Some(manifest.join("../../tests/conformance")).filter(|d| d.is_dir())
        })
}

/// The `rampart` binary under test.
pub(crate) fn rampart() -> Command {
    Command::new(env!("CARGO_BIN_EXE_rampart"))
}
