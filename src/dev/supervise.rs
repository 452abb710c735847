//! Child processes of `keyfleet dev`: started with their output in a log file and tied
//! to `dev`'s life (they die with it even if it is killed), stopped with SIGTERM and,
//! past a grace period, SIGKILL.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A child process that is stopped (SIGTERM, then SIGKILL) when dropped.
pub struct Supervised {
    pub what: String,
    pub child: Child,
    /// Already reaped: its pid may belong to someone else now, so never signal it.
    pub exited: bool,
}

impl Supervised {
    fn terminate(&mut self) {
        if !self.exited {
            // SAFETY: plain syscall on our own child, not yet reaped, so the pid is ours.
            unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        }
    }
}

/// Sends SIGTERM to every child, then waits for each (dropping it kills stragglers).
pub fn stop_all(mut children: Vec<Supervised>) {
    children.iter_mut().for_each(Supervised::terminate);
    drop(children);
}

impl Drop for Supervised {
    fn drop(&mut self) {
        if self.exited {
            return;
        }
        self.terminate();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!(
            "keyfleet dev: {} did not stop on SIGTERM; killing it",
            self.what
        );
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn spawn(cmd: &mut Command, log: &Path) -> Result<Child, String> {
    spawn_logging(cmd, log, false)
}

/// As [`spawn`], with `append` adding to the log instead of starting it afresh (a
/// process started again, as after an upgrade's switch).
pub fn spawn_logging(cmd: &mut Command, log: &Path, append: bool) -> Result<Child, String> {
    let out = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(append)
        .truncate(!append)
        .open(log)
        .map_err(|e| format!("{}: {e}", log.display()))?;
    let err = out
        .try_clone()
        .map_err(|e| format!("{}: {e}", log.display()))?;
    cmd.stdin(Stdio::null()).stdout(out).stderr(err);
    // SAFETY: prctl is async-signal-safe. The child dies with us even if we are killed
    // with SIGKILL, so a crashed `dev` leaves nothing behind.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
    cmd.spawn()
        .map_err(|e| format!("cannot start {:?}: {e}", cmd.get_program()))
}
