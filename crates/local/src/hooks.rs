//! Reload hooks for host services that cannot reload certificates by themselves: after a
//! watched Secret's content changes, and a quiet period (debounce) passes with no further
//! change, run a command and/or send a signal to a process named by a pid file.
//!
//! Trust: a hook runs a command as certwright's user and signals a process, so whoever may
//! write hook manifests may do both (see SECURITY.md). `--no-command-hooks` turns
//! commands off. A signal only ever goes to the one process a pid file names: the pid
//! must be a plain positive number greater than 1 that names a live process; negative
//! numbers (process groups), 0 and -1 (every process) are refused.

use crate::model::{Key, Model};
use certwright_api::duration;
use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const DEFAULT_DEBOUNCE: Duration = Duration::from_secs(2);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// The outcome of a hook's last run, shown by `certwright status`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HookRun {
    /// RFC 3339.
    pub time: String,
    pub ok: bool,
    pub reason: String,
    pub message: String,
}

/// Pending hook runs: hook → when it is due; and the results of finished runs.
#[derive(Default)]
pub struct Hooks {
    due: BTreeMap<Key, Instant>,
    running: Vec<std::thread::JoinHandle<()>>,
    /// Whether `command` hooks may run (`--no-command-hooks` turns them off).
    commands_disabled: bool,
    results: Arc<Mutex<BTreeMap<Key, HookRun>>>,
    /// Set when a run finished since the last [`Hooks::take_results`].
    changed: Arc<AtomicBool>,
}

fn debounce(model: &Model, key: &Key) -> Duration {
    model
        .hooks
        .get(key)
        .and_then(|(_, h)| h.spec.debounce.as_deref())
        .and_then(|d| duration::parse(d).ok())
        .unwrap_or(DEFAULT_DEBOUNCE)
}

impl Hooks {
    pub fn new(commands_disabled: bool) -> Self {
        Self {
            commands_disabled,
            ..Default::default()
        }
    }

    /// Notes that a Secret changed; hooks watching it become due after their debounce.
    pub fn secret_changed(&mut self, model: &Model, ns: &str, secret: &str) {
        for (key, (_, h)) in &model.hooks {
            if key.0 == ns && h.spec.secrets.iter().any(|s| s == secret) {
                let at = Instant::now() + debounce(model, key);
                self.due.insert(key.clone(), at);
            }
        }
    }

    /// The earliest time a hook is due.
    pub fn next_due(&self) -> Option<Instant> {
        self.due.values().min().copied()
    }

    /// Runs the hooks that are due (all of them when `flush`), each on its own thread.
    pub fn run_due(&mut self, model: &Model, flush: bool) {
        let now = Instant::now();
        let ready: Vec<Key> = self
            .due
            .iter()
            .filter(|(_, at)| flush || **at <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for k in ready {
            self.due.remove(&k);
            let Some((_, hook)) = model.hooks.get(&k) else {
                continue;
            };
            let spec = hook.spec.clone();
            let name = format!("{}/{}", k.0, k.1);
            let commands = !self.commands_disabled;
            let (results, changed) = (self.results.clone(), self.changed.clone());
            self.running.push(std::thread::spawn(move || {
                let run = run_hook(&name, &spec, commands);
                if let Ok(mut r) = results.lock() {
                    r.insert(k, run);
                }
                changed.store(true, Ordering::Release);
            }));
        }
        self.running.retain(|h| !h.is_finished());
    }

    /// The last run of every hook, when a run finished since the previous call.
    pub fn take_results(&self) -> Option<BTreeMap<Key, HookRun>> {
        if !self.changed.swap(false, Ordering::AcqRel) {
            return None;
        }
        self.results.lock().ok().map(|r| r.clone())
    }

    /// The last run of every hook.
    pub fn results(&self) -> BTreeMap<Key, HookRun> {
        self.results.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// Waits for running hooks to finish.
    pub fn wait(&mut self) {
        for h in self.running.drain(..) {
            let _ = h.join();
        }
    }
}

/// Checks a hook's spec; returns a message for each problem. `commands` says whether
/// command hooks are allowed.
pub fn validate(spec: &certwright_api::ReloadHookSpec, commands: bool) -> Vec<String> {
    let mut out = Vec::new();
    if spec.secrets.is_empty() {
        out.push("spec.secrets: at least one secret name is required".into());
    }
    if spec.command.is_empty() && spec.signal.is_none() {
        out.push("spec: one of command or signal is required".into());
    }
    if !spec.command.is_empty() && !commands {
        out.push(
            "spec.command: command hooks are disabled on this host (--no-command-hooks)".into(),
        );
    }
    if let Some(s) = &spec.signal {
        if signal_number(&s.name).is_none() {
            out.push(format!(
                "spec.signal.name: {:?} must be HUP, USR1, USR2, TERM, INT or QUIT",
                s.name
            ));
        }
        if s.pid_file.is_empty() {
            out.push("spec.signal.pidFile: required".into());
        } else if !std::path::Path::new(&s.pid_file).is_absolute() {
            out.push(format!(
                "spec.signal.pidFile: {:?} must be an absolute path",
                s.pid_file
            ));
        }
    }
    for (f, v) in [
        ("spec.debounce", &spec.debounce),
        ("spec.timeout", &spec.timeout),
    ] {
        if let Some(d) = v {
            if let Err(e) = duration::parse(d) {
                out.push(format!("{f}: {e}"));
            }
        }
    }
    out
}

fn signal_number(name: &str) -> Option<rustix::process::Signal> {
    use rustix::process::Signal;
    Some(match name.trim_start_matches("SIG") {
        "HUP" => Signal::HUP,
        "USR1" => Signal::USR1,
        "USR2" => Signal::USR2,
        "TERM" => Signal::TERM,
        "INT" => Signal::INT,
        "QUIT" => Signal::QUIT,
        _ => return None,
    })
}

/// Reads a pid file and checks what it names: a plain decimal number greater than 1 (no
/// sign, so never a process group, never "every process") of a live process.
pub fn read_pid(pid_file: &str) -> Result<rustix::process::Pid, String> {
    let text =
        std::fs::read_to_string(pid_file).map_err(|e| format!("pid file {pid_file}: {e}"))?;
    let t = text.trim();
    if t.is_empty() || t.len() > 10 || !t.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "pid file {pid_file}: {:?} is not a process id (a positive decimal number)",
            t.chars().take(32).collect::<String>()
        ));
    }
    let n: i32 = t
        .parse()
        .map_err(|_| format!("pid file {pid_file}: {t} is out of range"))?;
    if n <= 1 {
        return Err(format!(
            "pid file {pid_file}: pid {n} is refused (only a single process other than init is signalled)"
        ));
    }
    let pid = rustix::process::Pid::from_raw(n)
        .ok_or_else(|| format!("pid file {pid_file}: pid {n} is refused"))?;
    match rustix::process::test_kill_process(pid) {
        Ok(()) => Ok(pid),
        Err(rustix::io::Errno::SRCH) => {
            Err(format!("pid file {pid_file}: no process {n} is running"))
        }
        Err(e) => Err(format!("pid file {pid_file}: process {n}: {e}")),
    }
}

fn run_hook(name: &str, spec: &certwright_api::ReloadHookSpec, commands: bool) -> HookRun {
    let mut errors: Vec<(&str, String)> = Vec::new();
    let problems = validate(spec, commands);
    if !problems.is_empty() {
        let msg = problems.join("; ");
        tracing::error!(hook = %name, error = %msg, "reload hook is invalid");
        return finish(vec![("InvalidReloadHook", msg)]);
    }
    if !spec.command.is_empty() {
        if let Err(e) = run_command(name, spec) {
            errors.push(("CommandFailed", e));
        }
    }
    if let Some(sig) = &spec.signal {
        let signal = signal_number(&sig.name);
        match (read_pid(&sig.pid_file), signal) {
            (Ok(pid), Some(signal)) => match rustix::process::kill_process(pid, signal) {
                Ok(()) => {
                    tracing::info!(hook = %name, signal = %sig.name, pid = pid.as_raw_nonzero().get(), "reload signal sent")
                }
                Err(e) => {
                    tracing::warn!(hook = %name, error = %e, "reload signal failed");
                    errors.push(("SignalFailed", format!("sending {}: {e}", sig.name)));
                }
            },
            (Err(e), _) => {
                tracing::warn!(hook = %name, error = %e, "reload signal refused");
                errors.push(("InvalidPidFile", e));
            }
            (_, None) => errors.push(("InvalidReloadHook", format!("unknown signal {}", sig.name))),
        }
    }
    finish(errors)
}

fn finish(errors: Vec<(&str, String)>) -> HookRun {
    let time = certwright_pki::der::rfc3339(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or_default(),
    );
    match errors.first() {
        None => HookRun {
            time,
            ok: true,
            reason: "Reloaded".into(),
            message: "the reload hook ran".into(),
        },
        Some((reason, _)) => HookRun {
            time,
            ok: false,
            reason: reason.to_string(),
            message: errors
                .iter()
                .map(|(_, m)| m.as_str())
                .collect::<Vec<_>>()
                .join("; "),
        },
    }
}

/// Runs the hook's command (no shell), killed after its timeout.
fn run_command(name: &str, spec: &certwright_api::ReloadHookSpec) -> Result<(), String> {
    let timeout = spec
        .timeout
        .as_deref()
        .and_then(|t| duration::parse(t).ok())
        .unwrap_or(DEFAULT_TIMEOUT);
    let started = Instant::now();
    let mut child = match Command::new(&spec.command[0])
        .args(&spec.command[1..])
        .stdin(Stdio::null())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(hook = %name, command = %spec.command[0], error = %e, "reload hook: cannot start the command");
            return Err(format!("cannot start {:?}: {e}", spec.command[0]));
        }
    };
    loop {
        match child.try_wait() {
            Ok(Some(st)) => {
                let code = st
                    .code()
                    .map(|c| c.to_string())
                    .unwrap_or_else(|| "signal".into());
                if st.success() {
                    tracing::info!(hook = %name, exit = %code, "reload hook ran");
                    return Ok(());
                }
                tracing::warn!(hook = %name, exit = %code, "reload hook failed");
                return Err(format!("the command exited with {code}"));
            }
            Ok(None) if started.elapsed() > timeout => {
                let _ = child.kill();
                let _ = child.wait();
                let t = duration::format(timeout);
                tracing::warn!(hook = %name, timeout = %t, "reload hook timed out and was killed");
                return Err(format!("the command timed out after {t} and was killed"));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => {
                tracing::warn!(hook = %name, error = %e, "reload hook: cannot wait for the command");
                return Err(format!("cannot wait for the command: {e}"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pid_file(dir: &std::path::Path, text: &str) -> String {
        let p = dir.join("app.pid");
        std::fs::write(&p, text).expect("pid file");
        p.display().to_string()
    }

    #[test]
    fn pid_files_name_one_live_process_only() {
        let tmp = tempfile::tempdir().expect("tmp");
        for bad in [
            "-1",
            "-42",
            "0",
            "1",
            "+5",
            " ",
            "12abc",
            "99999999999",
            "4294967297",
        ] {
            let e = read_pid(&pid_file(tmp.path(), bad)).expect_err(bad);
            assert!(e.contains("pid file"), "{bad}: {e}");
        }
        let own = std::process::id().to_string();
        let pid = read_pid(&pid_file(tmp.path(), &format!("{own}\n"))).expect("own pid");
        assert_eq!(pid.as_raw_nonzero().get().to_string(), own);
        // A pid that is not running (pid_max is at most 2^22).
        let e = read_pid(&pid_file(tmp.path(), "4194305")).expect_err("not running");
        assert!(e.contains("no process"), "{e}");
    }

    #[test]
    fn a_refused_pid_is_reported_on_the_hook_and_nothing_is_signalled() {
        let tmp = tempfile::tempdir().expect("tmp");
        let spec = certwright_api::ReloadHookSpec {
            secrets: vec!["s".into()],
            signal: Some(certwright_api::SignalSpec {
                name: "HUP".into(),
                pid_file: pid_file(tmp.path(), "-1"),
            }),
            ..Default::default()
        };
        let run = run_hook("demo/h", &spec, true);
        assert!(!run.ok);
        assert_eq!(run.reason, "InvalidPidFile");
        assert!(run.message.contains("\"-1\""), "{}", run.message);
    }

    #[test]
    fn command_hooks_can_be_disabled() {
        let spec = certwright_api::ReloadHookSpec {
            secrets: vec!["s".into()],
            command: vec!["/bin/true".into()],
            ..Default::default()
        };
        assert!(validate(&spec, true).is_empty());
        let run = run_hook("demo/h", &spec, false);
        assert!(!run.ok);
        assert!(
            run.message.contains("--no-command-hooks"),
            "{}",
            run.message
        );
    }
}
