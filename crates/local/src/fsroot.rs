//! Directories under the state root, opened so that nothing can escape it: every path is
//! a list of validated components (no `..`, no `/`, no empty or absolute part), walked one
//! directory handle at a time with `O_NOFOLLOW`, and every file is created, read, renamed
//! and removed relative to the handle of the directory that holds it. A symbolic link that
//! certwright did not make is never followed: opening it fails with [`is_link_refusal`].
//!
//! Why hand-written over rustix rather than a capability crate such as cap-std: those
//! follow symbolic links as long as they stay beneath the root, and certwright must not
//! follow any link planted in its state directory (its own `..data` and per-key links are
//! read with `readlinkat` and checked, never traversed). The operations needed are few
//! (about ten), and rustix is already the runtime's system-call layer.

use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use std::ffi::OsStr;
use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

/// Files certwright creates are 0600 and directories 0700.
const FILE_MODE: u32 = 0o600;
const DIR_MODE: u32 = 0o700;
/// Nested directories `remove_tree` descends into at most (certwright makes one level).
const MAX_TREE_DEPTH: usize = 8;

/// What an entry is, without following it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    File,
    Dir,
    Link,
    Other,
}

/// An open directory beneath the state root.
#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
    /// For messages only; never used to open anything.
    path: PathBuf,
}

/// Checks one path component: not empty, not `.` or `..`, no `/` or NUL, at most 255 bytes.
pub fn component(name: &str) -> io::Result<&str> {
    if name.is_empty()
        || name == "."
        || name == ".."
        || name.len() > 255
        || name.bytes().any(|b| b == b'/' || b == 0)
    {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{name:?} is not a valid file name (empty, '.', '..', or contains '/')"),
        ));
    }
    Ok(name)
}

/// The error for a symbolic link (or other non-directory) met where certwright expected its
/// own file or directory.
fn link_refusal(path: &Path) -> io::Error {
    io::Error::other(format!(
        "{} is a symbolic link or not a directory certwright made; refusing to follow it",
        path.display()
    ))
}

/// Whether an error is a refusal to follow a link.
pub fn is_link_refusal(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::Other && e.to_string().contains("refusing to follow")
}

fn kind_of(t: FileType) -> Kind {
    match t {
        FileType::RegularFile => Kind::File,
        FileType::Directory => Kind::Dir,
        FileType::Symlink => Kind::Link,
        _ => Kind::Other,
    }
}

impl Dir {
    /// Opens (creating with 0700 when `create`) the state root itself. The root is the
    /// path the administrator gave (`--state`), so it is resolved normally; everything
    /// beneath it is not.
    pub fn open_root(path: &Path, create: bool) -> io::Result<Dir> {
        if create {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(DIR_MODE)
                .create(path)?;
        }
        let fd = rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Dir {
            fd,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn child_path(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Opens the directory `name` in this one without following a link; `None` when it
    /// does not exist and `create` is false.
    pub fn open_dir(&self, name: &str, create: bool) -> io::Result<Option<Dir>> {
        let name = component(name)?;
        let path = self.child_path(name);
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let opened = match rustix::fs::openat(&self.fd, name, flags, Mode::empty()) {
            Err(rustix::io::Errno::NOENT) if create => {
                match rustix::fs::mkdirat(&self.fd, name, Mode::from_raw_mode(DIR_MODE)) {
                    Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                    Err(e) => return Err(io::Error::from(e)),
                }
                rustix::fs::openat(&self.fd, name, flags, Mode::empty())
            }
            other => other,
        };
        match opened {
            Ok(fd) => Ok(Some(Dir { fd, path })),
            Err(rustix::io::Errno::NOENT) => Ok(None),
            Err(rustix::io::Errno::LOOP) | Err(rustix::io::Errno::NOTDIR) => {
                Err(link_refusal(&path))
            }
            Err(e) => Err(io::Error::from(e)),
        }
    }

    /// Walks `components` from this directory (see [`Dir::open_dir`]).
    pub fn walk(&self, components: &[&str], create: bool) -> io::Result<Option<Dir>> {
        let mut cur: Option<Dir> = None;
        for c in components {
            let base = cur.as_ref().unwrap_or(self);
            match base.open_dir(c, create)? {
                Some(d) => cur = Some(d),
                None => return Ok(None),
            }
        }
        match cur {
            Some(d) => Ok(Some(d)),
            None => Ok(Some(self.try_clone()?)),
        }
    }

    pub fn try_clone(&self) -> io::Result<Dir> {
        Ok(Dir {
            fd: self.fd.try_clone()?,
            path: self.path.clone(),
        })
    }

    /// Reads the regular file `name`; `None` when it does not exist. A link is refused.
    pub fn read(&self, name: &str) -> io::Result<Option<Vec<u8>>> {
        let name = component(name)?;
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK;
        let fd = match rustix::fs::openat(&self.fd, name, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::NOENT) => return Ok(None),
            Err(rustix::io::Errno::LOOP) => return Err(link_refusal(&self.child_path(name))),
            Err(e) => return Err(io::Error::from(e)),
        };
        let st = rustix::fs::fstat(&fd)?;
        if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
            return Err(io::Error::other(format!(
                "{} is not a regular file",
                self.child_path(name).display()
            )));
        }
        // Read into a buffer sized from the one fstat (std's read_to_end would stat and
        // seek again): one read for a file that did not grow, two in all.
        let mut out = vec![0u8; st.st_size.max(0) as usize + 1];
        let mut len = 0;
        loop {
            if len == out.len() {
                out.resize(out.len() * 2, 0);
            }
            match rustix::io::read(&fd, &mut out[len..]) {
                Ok(0) => break,
                Ok(n) => len += n,
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(io::Error::from(e)),
            }
        }
        out.truncate(len);
        Ok(Some(out))
    }

    /// Creates the file `name` (it must not exist), 0600, optionally fsynced.
    pub fn write_new(&self, name: &str, data: &[u8], fsync: bool) -> io::Result<()> {
        let name = component(name)?;
        let flags =
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = rustix::fs::openat(&self.fd, name, flags, Mode::from_raw_mode(FILE_MODE))?;
        let mut f = std::fs::File::from(fd);
        f.write_all(data)?;
        if fsync {
            f.sync_all()?;
        }
        Ok(())
    }

    /// Opens the file `name` for reading and writing, creating it (0600) if missing; a
    /// link is refused.
    pub fn open_or_create(&self, name: &str) -> io::Result<std::fs::File> {
        let name = component(name)?;
        let flags = OFlags::RDWR | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        match rustix::fs::openat(&self.fd, name, flags, Mode::from_raw_mode(FILE_MODE)) {
            Ok(fd) => Ok(std::fs::File::from(fd)),
            Err(rustix::io::Errno::LOOP) => Err(link_refusal(&self.child_path(name))),
            Err(e) => Err(io::Error::from(e)),
        }
    }

    /// Replaces the file `name` atomically: a temporary file, optional fsync, a rename.
    /// Whatever was at `name` (a planted link included) is replaced, never written through.
    pub fn write_atomic(&self, name: &str, data: &[u8], fsync: bool) -> io::Result<()> {
        let name = component(name)?;
        let tmp = format!("..tmp.{name}");
        component(&tmp)?;
        match self.write_new(&tmp, data, fsync) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                self.remove_file(&tmp)?;
                self.write_new(&tmp, data, fsync)?;
            }
            other => other?,
        }
        self.rename(&tmp, name)
    }

    /// The target of the link `name`; `None` when `name` does not exist.
    pub fn readlink(&self, name: &str) -> io::Result<Option<String>> {
        let name = component(name)?;
        match rustix::fs::readlinkat(&self.fd, name, Vec::new()) {
            Ok(t) => Ok(Some(t.to_string_lossy().into_owned())),
            Err(rustix::io::Errno::NOENT) => Ok(None),
            Err(e) => Err(io::Error::from(e)),
        }
    }

    /// Creates the link `name` → `target` (a name relative to this directory).
    pub fn symlink(&self, target: &str, name: &str) -> io::Result<()> {
        let name = component(name)?;
        rustix::fs::symlinkat(target, &self.fd, name).map_err(io::Error::from)
    }

    /// Renames `from` to `to` within this directory (atomic; replaces `to`).
    pub fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        let (from, to) = (component(from)?, component(to)?);
        rustix::fs::renameat(&self.fd, from, &self.fd, to).map_err(io::Error::from)
    }

    /// Removes the file or link `name`; a missing one is fine.
    pub fn remove_file(&self, name: &str) -> io::Result<()> {
        let name = component(name)?;
        match rustix::fs::unlinkat(&self.fd, name, AtFlags::empty()) {
            Ok(()) | Err(rustix::io::Errno::NOENT) => Ok(()),
            Err(e) => Err(io::Error::from(e)),
        }
    }

    /// What `name` is, without following it; `None` when it does not exist.
    pub fn kind(&self, name: &str) -> io::Result<Option<Kind>> {
        let name = component(name)?;
        match rustix::fs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some(kind_of(FileType::from_raw_mode(st.st_mode)))),
            Err(rustix::io::Errno::NOENT) => Ok(None),
            Err(e) => Err(io::Error::from(e)),
        }
    }

    /// The entries of this directory (without `.` and `..`), with what each is. Names that
    /// are not UTF-8 cannot be certwright's and are left out.
    pub fn entries(&self) -> io::Result<Vec<(String, Kind)>> {
        let mut out = Vec::new();
        for e in rustix::fs::Dir::read_from(&self.fd)? {
            let e = e?;
            let Ok(name) = e.file_name().to_str() else {
                continue;
            };
            if name == "." || name == ".." {
                continue;
            }
            let kind = match e.file_type() {
                FileType::Unknown => match self.kind(name)? {
                    Some(k) => k,
                    None => continue,
                },
                t => kind_of(t),
            };
            out.push((name.to_string(), kind));
        }
        out.sort();
        Ok(out)
    }

    /// Removes `name` and, if it is a directory, everything in it, never following a link
    /// (a link inside is removed, not its target). A missing `name` is fine.
    pub fn remove_tree(&self, name: &str) -> io::Result<()> {
        self.remove_tree_at(name, 0)
    }

    fn remove_tree_at(&self, name: &str, depth: usize) -> io::Result<()> {
        match self.kind(name)? {
            None => Ok(()),
            Some(Kind::Dir) => {
                if depth >= MAX_TREE_DEPTH {
                    return Err(io::Error::other(format!(
                        "{}: directories nested too deep to remove",
                        self.child_path(name).display()
                    )));
                }
                if let Some(sub) = self.open_dir(name, false)? {
                    for (child, _) in sub.entries()? {
                        sub.remove_tree_at(&child, depth + 1)?;
                    }
                }
                match rustix::fs::unlinkat(&self.fd, name, AtFlags::REMOVEDIR) {
                    Ok(()) | Err(rustix::io::Errno::NOENT) => Ok(()),
                    Err(e) => Err(io::Error::from(e)),
                }
            }
            Some(_) => self.remove_file(name),
        }
    }

    /// Flushes this directory's entries to disk.
    pub fn sync(&self) -> io::Result<()> {
        rustix::fs::fsync(&self.fd).map_err(io::Error::from)
    }

    /// Flushes the whole file system holding this directory (one `syncfs`).
    pub fn syncfs(&self) -> io::Result<()> {
        rustix::fs::syncfs(&self.fd).map_err(io::Error::from)
    }
}

/// The file name of `p` as UTF-8, if it has one.
pub fn file_name(p: &Path) -> Option<&str> {
    p.file_name()
        .map(OsStr::as_bytes)
        .and_then(|b| std::str::from_utf8(b).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn components_are_checked() {
        for bad in ["", ".", "..", "a/b", "/abs", "a\0b"] {
            assert!(component(bad).is_err(), "{bad:?}");
        }
        for good in ["demo", "..data", "..2026_11_28", "tls.crt"] {
            assert!(component(good).is_ok(), "{good:?}");
        }
    }

    #[test]
    fn links_are_never_followed() {
        let tmp = tempfile::tempdir().expect("tmp");
        let outside = tmp.path().join("outside");
        std::fs::create_dir(&outside).expect("outside");
        std::fs::write(outside.join("secret"), "x").expect("file");
        let root_path = tmp.path().join("root");
        let root = Dir::open_root(&root_path, true).expect("root");
        symlink(&outside, root_path.join("ns")).expect("plant dir link");
        symlink(outside.join("secret"), root_path.join("f")).expect("plant file link");

        let e = root.open_dir("ns", true).expect_err("dir link refused");
        assert!(is_link_refusal(&e), "{e}");
        let e = root.walk(&["ns", "x"], true).expect_err("walk refused");
        assert!(is_link_refusal(&e), "{e}");
        let e = root.read("f").expect_err("file link refused");
        assert!(is_link_refusal(&e), "{e}");
        assert!(root.write_new("f", b"y", false).is_err());
        // Replacing atomically replaces the link itself, never its target.
        root.write_atomic("f", b"mine", false).expect("replace");
        assert_eq!(std::fs::read(outside.join("secret")).expect("target"), b"x");
        assert_eq!(root.read("f").expect("read"), Some(b"mine".to_vec()));
        // Removing a tree with a link inside removes the link, not what it points at.
        let d = root.open_dir("d", true).expect("mk").expect("d");
        d.symlink(outside.to_str().expect("utf8"), "escape")
            .expect("link");
        root.remove_tree("d").expect("remove");
        assert!(outside.join("secret").exists());
        assert_eq!(root.kind("d").expect("kind"), None);
        assert_eq!(root.kind("ns").expect("kind"), Some(Kind::Link));
    }
}
