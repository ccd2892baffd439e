//! Change notification for the manifest files and the Secret directories, through the
//! `notify` crate (inotify on Linux): the runtime wakes when something changed instead of
//! looking at every file 5 times a second. Where nothing can be watched (no inotify, the
//! per-user watch limit reached, a network filesystem that sends no events), [`Changes`]
//! is absent and the callers poll as before; a slow periodic check stays in both cases
//! (events can be lost when a queue overflows). Links are not followed: a link planted in
//! a watched tree adds no watch outside it.

use notify::{Config, RecommendedWatcher, RecursiveMode, Watcher};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::time::Duration;

/// A live watch: something under the watched paths changed since the last look.
pub struct Changes {
    _watcher: RecommendedWatcher,
    events: Receiver<()>,
}

impl Changes {
    /// Watches `paths`: a directory itself (with its subdirectories when `recursive`), a
    /// file through its directory (editors replace files by renaming). None when a path
    /// cannot be watched; the caller then polls.
    pub fn watch(paths: &[PathBuf], recursive: bool) -> Option<Changes> {
        let (tx, events) = channel();
        // Every event counts as a change, and so does an error (a queue overflow may
        // have hidden one): the caller looks at what it watches either way.
        let handler = move |_: notify::Result<notify::Event>| {
            let _ = tx.send(());
        };
        let config = Config::default().with_follow_symlinks(false);
        let mut watcher = match RecommendedWatcher::new(handler, config) {
            Ok(w) => w,
            Err(e) => {
                tracing::info!(error = %e, "cannot watch for changes; polling instead");
                return None;
            }
        };
        for p in paths {
            let (target, mode) = if p.is_dir() {
                let mode = if recursive {
                    RecursiveMode::Recursive
                } else {
                    RecursiveMode::NonRecursive
                };
                (p.as_path(), mode)
            } else {
                let parent = p.parent().filter(|d| !d.as_os_str().is_empty());
                (
                    parent.unwrap_or(Path::new(".")),
                    RecursiveMode::NonRecursive,
                )
            };
            if let Err(e) = watcher.watch(target, mode) {
                tracing::info!(path = %target.display(), error = %e, "cannot watch for changes; polling instead");
                return None;
            }
        }
        Some(Changes {
            _watcher: watcher,
            events,
        })
    }

    /// Waits up to `timeout` for a change, then takes every change already reported (a
    /// burst of events is one change). True when something changed.
    pub fn wait(&self, timeout: Duration) -> bool {
        match self.events.recv_timeout(timeout) {
            Ok(()) => {
                self.take();
                true
            }
            Err(RecvTimeoutError::Timeout) => false,
            // The watcher is gone: report a change so that the caller looks.
            Err(RecvTimeoutError::Disconnected) => true,
        }
    }

    /// Takes every change reported so far, without waiting. True when there was one.
    pub fn take(&self) -> bool {
        let mut any = false;
        while self.events.try_recv().is_ok() {
            any = true;
        }
        any
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replaced_file_and_a_new_subdirectory_entry_are_seen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("m.yaml");
        std::fs::write(&file, "a: 1\n").expect("write");
        std::fs::create_dir(dir.path().join("ns")).expect("mkdir");
        let Some(changes) = Changes::watch(std::slice::from_ref(&file), false) else {
            assert!(std::env::var("CI").is_err(), "inotify is available in CI");
            eprintln!("skipped: this machine cannot watch files (no inotify)");
            return;
        };
        assert!(!changes.take(), "nothing changed yet");
        // An editor's save: write a new file and rename it over the old one.
        let tmp = dir.path().join(".m.yaml.swp");
        std::fs::write(&tmp, "a: 2\n").expect("write");
        std::fs::rename(&tmp, &file).expect("rename");
        assert!(changes.wait(Duration::from_secs(30)), "the rename is seen");
        let tree = Changes::watch(&[dir.path().to_path_buf()], true).expect("watch a tree");
        std::fs::write(dir.path().join("ns/secret"), "x").expect("write");
        assert!(
            tree.wait(Duration::from_secs(30)),
            "a change in a subdirectory is seen"
        );
    }
}
