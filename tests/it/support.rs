//! Helpers shared by the integration tests: running the binary, fixture paths.

use std::path::PathBuf;
use std::process::{Command, Output};

/// The repository root (tests run with it as the working directory). Read when the test runs
/// (cargo sets it), not baked in at compile time: checkouts that share a target directory
/// (CI's fresh clone and a working copy) can reuse each other's test binaries, and a baked
/// path would read the other checkout's fixtures.
pub fn root() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
}

/// A fixture under `tests/data/`.
pub fn fixture(name: &str) -> String {
    root()
        .join("tests/data")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

/// What a run of the binary did.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn from(output: Output) -> Run {
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Asserts success and returns stdout.
    #[track_caller]
    pub fn ok(&self) -> &str {
        assert_eq!(
            self.code, 0,
            "expected success\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        &self.stdout
    }

    /// Asserts a failure with exit code `code` whose stderr contains every one of `needles`.
    #[track_caller]
    pub fn fails_with(&self, code: i32, needles: &[&str]) {
        assert_eq!(
            self.code, code,
            "expected exit {code}\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        for needle in needles {
            assert!(
                self.stderr.contains(needle),
                "stderr lacks {needle:?}:\n{}",
                self.stderr
            );
        }
        assert!(!self.stderr.contains("panicked"), "panic:\n{}", self.stderr);
    }
}

/// A command for the `hqflow` binary with a clean environment for its settings.
pub fn hqflow_command() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hqflow"));
    // Tests compute model outputs unless they ask for the cache (tests/it/cache.rs).
    cmd.env_remove("HQFLOW_LOG")
        .env_remove("HQFLOW_CACHE")
        .env("HQFLOW_NO_CACHE", "1")
        .env("HQFLOW_HISTORY", "/dev/null");
    cmd
}

/// Runs `hqflow ARGS` in `dir` with stdin closed.
pub fn hqflow_in(dir: &std::path::Path, args: &[&str]) -> Run {
    let output = hqflow_command()
        .args(args)
        .current_dir(dir)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("the hqflow binary runs");
    Run::from(output)
}

/// Runs `hqflow ARGS` in the repository root.
pub fn hqflow(args: &[&str]) -> Run {
    hqflow_in(&root(), args)
}

/// Runs `hqflow ARGS` with `input` on stdin.
pub fn hqflow_stdin(args: &[&str], input: &str) -> Run {
    use std::io::Write;
    let mut child = hqflow_command()
        .args(args)
        .current_dir(root())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the hqflow binary starts");
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(input.as_bytes())
        .expect("stdin accepts input");
    Run::from(
        child
            .wait_with_output()
            .expect("the hqflow binary finishes"),
    )
}
