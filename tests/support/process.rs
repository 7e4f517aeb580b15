//! The `cdc-source` and `cdc-sink` binaries as child processes, for tests of the CLI, exit
//! codes, signals and crash recovery.

use std::fs::File;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::unique_dir;

/// Which of the two binaries to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binary {
    Source,
    Sink,
}

pub struct CdcProcess {
    child: Child,
    dir: PathBuf,
}

impl CdcProcess {
    /// `cdc-source <verb> --config <file> <extra_args…>` with `config_toml` written to a file
    /// of its own, extra environment (e.g. `PGCDC__KAFKA__BROKERS`), and stdout and stderr
    /// captured to files.
    pub fn spawn(
        verb: &str,
        config_toml: &str,
        extra_args: &[&str],
        env: &[(&str, &str)],
    ) -> CdcProcess {
        CdcProcess::spawn_program(None, Binary::Source, verb, config_toml, extra_args, env)
    }

    /// `cdc-sink <verb> --config <file>`, as [`spawn`](Self::spawn) does for the source.
    pub fn sink(verb: &str, config_toml: &str) -> CdcProcess {
        CdcProcess::spawn_program(None, Binary::Sink, verb, config_toml, &[], &[])
    }

    /// `binary <verb> --config <file> <extra_args…>` inside network namespace `netns` (`ip netns exec`, which
    /// execs the binary, so signals reach it directly).
    pub fn in_netns(
        netns: &str,
        binary: Binary,
        verb: &str,
        config_toml: &str,
        extra_args: &[String],
    ) -> CdcProcess {
        let extra_args: Vec<&str> = extra_args.iter().map(String::as_str).collect();
        CdcProcess::spawn_program(Some(netns), binary, verb, config_toml, &extra_args, &[])
    }

    fn spawn_program(
        netns: Option<&str>,
        binary: Binary,
        verb: &str,
        config_toml: &str,
        extra_args: &[&str],
        env: &[(&str, &str)],
    ) -> CdcProcess {
        let program = match binary {
            Binary::Source => program("PGCDC_SOURCE_BIN", env!("CARGO_BIN_EXE_cdc-source")),
            Binary::Sink => program("PGCDC_SINK_BIN", env!("CARGO_BIN_EXE_cdc-sink")),
        };
        let dir = unique_dir("process");
        let config = dir.join("config.toml");
        std::fs::write(&config, config_toml).expect("write the config");
        let stdout = File::create(dir.join("stdout")).expect("create stdout file");
        let stderr = File::create(dir.join("stderr")).expect("create stderr file");
        let mut command = match netns {
            Some(netns) => {
                let mut command = Command::new("ip");
                command.args(["netns", "exec", netns, &program]);
                command
            }
            None => Command::new(&program),
        };
        let child = command
            .arg(verb)
            .arg("--config")
            .arg(&config)
            .args(extra_args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {program}: {e}"));
        CdcProcess { child, dir }
    }

    /// `cdc-source run` with the given configuration.
    pub fn run(config_toml: &str) -> CdcProcess {
        CdcProcess::spawn("run", config_toml, &[], &[])
    }

    /// Runs a verb that is expected to finish (`check`, `init`, `teardown`) and returns its
    /// exit code and stderr.
    pub fn complete(verb: &str, config_toml: &str, timeout: Duration) -> (i32, String) {
        let mut process = CdcProcess::spawn(verb, config_toml, &[], &[]);
        let code = process.wait_exit(timeout);
        (code, process.stderr_text())
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.join("config.toml")
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A crash: no chance to flush or acknowledge anything.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The orderly shutdown a service manager asks for.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM {} failed", self.child.id());
    }

    /// The exit code, or 128 + signal number when a signal ended it (as shells report it).
    /// Panics, with the process's stderr, if it is still running after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> i32 {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("poll the process") {
                return exit_code(status);
            }
            if Instant::now() >= deadline {
                panic!(
                    "process still running after {timeout:?}; stderr:\n{}",
                    self.stderr_text()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("poll the process").is_none()
    }

    pub fn stderr_text(&self) -> String {
        std::fs::read_to_string(self.dir.join("stderr")).unwrap_or_default()
    }

    pub fn stdout_text(&self) -> String {
        std::fs::read_to_string(self.dir.join("stdout")).unwrap_or_default()
    }
}

/// The binary to run: the path in environment variable `variable` when set (benchmarks compare
/// another build, e.g. the one before a change, this way), else this build's `built`.
fn program(variable: &str, built: &str) -> String {
    std::env::var(variable).unwrap_or_else(|_| built.to_owned())
}

fn exit_code(status: ExitStatus) -> i32 {
    status
        .code()
        .or_else(|| status.signal().map(|signal| 128 + signal))
        .expect("an exit code or a signal")
}

impl Drop for CdcProcess {
    fn drop(&mut self) {
        if self.is_running() {
            self.kill9();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
