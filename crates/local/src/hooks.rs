//! Reload hooks for host services that cannot reload certificates by themselves: after a
//! watched Secret's content changes, and a quiet period (debounce) passes with no further
//! change, run a command and/or send a signal to a process named by a pid file.

use crate::log;
use crate::model::{Key, Model};
use certwright_api::duration;
use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const DEFAULT_DEBOUNCE: Duration = Duration::from_secs(2);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Pending hook runs: hook → when it is due.
#[derive(Default)]
pub struct Hooks {
    due: BTreeMap<Key, Instant>,
    running: Vec<std::thread::JoinHandle<()>>,
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
            self.running
                .push(std::thread::spawn(move || run_hook(&name, &spec)));
        }
        self.running.retain(|h| !h.is_finished());
    }

    /// Waits for running hooks to finish.
    pub fn wait(&mut self) {
        for h in self.running.drain(..) {
            let _ = h.join();
        }
    }
}

/// Checks a hook's spec; returns a message for each problem.
pub fn validate(spec: &certwright_api::ReloadHookSpec) -> Vec<String> {
    let mut out = Vec::new();
    if spec.secrets.is_empty() {
        out.push("spec.secrets: at least one secret name is required".into());
    }
    if spec.command.is_empty() && spec.signal.is_none() {
        out.push("spec: one of command or signal is required".into());
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

fn run_hook(name: &str, spec: &certwright_api::ReloadHookSpec) {
    let problems = validate(spec);
    if !problems.is_empty() {
        log::error(
            "reload hook is invalid",
            &[("hook", name), ("error", &problems.join("; "))],
        );
        return;
    }
    if !spec.command.is_empty() {
        let timeout = spec
            .timeout
            .as_deref()
            .and_then(|t| duration::parse(t).ok())
            .unwrap_or(DEFAULT_TIMEOUT);
        let started = Instant::now();
        match Command::new(&spec.command[0])
            .args(&spec.command[1..])
            .stdin(Stdio::null())
            .spawn()
        {
            Ok(mut child) => loop {
                match child.try_wait() {
                    Ok(Some(st)) => {
                        let code = st
                            .code()
                            .map(|c| c.to_string())
                            .unwrap_or_else(|| "signal".into());
                        if st.success() {
                            log::info("reload hook ran", &[("hook", name), ("exit", &code)]);
                        } else {
                            log::warn("reload hook failed", &[("hook", name), ("exit", &code)]);
                        }
                        break;
                    }
                    Ok(None) if started.elapsed() > timeout => {
                        let _ = child.kill();
                        let _ = child.wait();
                        log::warn(
                            "reload hook timed out and was killed",
                            &[("hook", name), ("timeout", &duration::format(timeout))],
                        );
                        break;
                    }
                    Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                    Err(e) => {
                        log::warn(
                            "reload hook: cannot wait for the command",
                            &[("hook", name), ("error", &e.to_string())],
                        );
                        break;
                    }
                }
            },
            Err(e) => log::warn(
                "reload hook: cannot start the command",
                &[
                    ("hook", name),
                    ("command", &spec.command[0]),
                    ("error", &e.to_string()),
                ],
            ),
        }
    }
    if let Some(sig) = &spec.signal {
        let pid = std::fs::read_to_string(&sig.pid_file)
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok())
            .and_then(rustix::process::Pid::from_raw);
        match (pid, signal_number(&sig.name)) {
            (Some(pid), Some(signal)) => match rustix::process::kill_process(pid, signal) {
                Ok(()) => log::info(
                    "reload signal sent",
                    &[
                        ("hook", name),
                        ("signal", &sig.name),
                        ("pid", &pid.as_raw_nonzero().to_string()),
                    ],
                ),
                Err(e) => log::warn(
                    "reload signal failed",
                    &[("hook", name), ("error", &e.to_string())],
                ),
            },
            _ => log::warn(
                "reload signal: no valid pid",
                &[("hook", name), ("pidFile", &sig.pid_file)],
            ),
        }
    }
}
