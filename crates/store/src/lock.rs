//! One writer per SQLite data directory: an exclusive `flock` on `DIR/siyu.lock`, held for as
//! long as the process writes, and released by the kernel when it exits in any way (`kill -9`
//! included), so a stale lock never needs clearing by hand.
//!
//! The file says who holds it (pid, what it is, and for a server the address it serves on),
//! so a second `siyu serve`, or a one-shot command that writes, can say at once who is in
//! the way instead of writing beside it or waiting for it. It is created 0600: it names the
//! holder only to the data directory's owner.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Who holds a data directory.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    pub pid: u32,
    /// `serve`, `import`, `tenant`, … : the command that holds it.
    pub command: String,
    /// Where a server serves, once it is listening.
    pub addr: Option<String>,
    /// What a one-shot command beside the server authenticates with (valid while the server
    /// runs; see `siyu_app::operator_key`). Never printed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

impl std::fmt::Debug for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Holder")
            .field("pid", &self.pid)
            .field("command", &self.command)
            .field("addr", &self.addr)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "`siyu {}` (pid {})", self.command, self.pid)?;
        if let Some(a) = &self.addr {
            write!(f, ", serving http://{a}")?;
        }
        Ok(())
    }
}

/// Why a directory could not be locked.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds it (`None`: it has not said who yet — it is starting).
    #[error("{} holds the data directory {}: stop it first, or make the change through the server's HTTP API", .holder.as_ref().map_or("another siyu process (starting)".to_string(), |h| h.to_string()), .dir.display())]
    Held {
        dir: PathBuf,
        holder: Option<Holder>,
    },
    #[error("cannot lock the data directory {}: {source}", .dir.display())]
    Io {
        dir: PathBuf,
        source: std::io::Error,
    },
}

impl LockError {
    pub fn code(&self) -> &'static str {
        match self {
            LockError::Held { .. } => "store_locked",
            LockError::Io { .. } => "store_unavailable",
        }
    }
}

/// The held lock; dropping it (or the process ending) releases it.
#[derive(Debug)]
pub struct DirLock {
    file: File,
    holder: Holder,
}

/// The lock file of a data directory.
pub fn lock_path(dir: &Path) -> PathBuf {
    dir.join("siyu.lock")
}

impl DirLock {
    /// Takes the directory's lock for `command`, at once or not at all (never waits).
    pub fn acquire(dir: &Path, command: &str) -> Result<DirLock, LockError> {
        let io = |source| LockError::Io {
            dir: dir.to_path_buf(),
            source,
        };
        create_private_dir(dir).map_err(io)?;
        let mut options = OpenOptions::new();
        options.read(true).write(true).create(true).truncate(false);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(lock_path(dir)).map_err(io)?;
        if !try_lock(&file).map_err(io)? {
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            return Err(LockError::Held {
                dir: dir.to_path_buf(),
                holder: serde_json::from_str(&text).ok(),
            });
        }
        let mut lock = DirLock {
            file,
            holder: Holder {
                pid: std::process::id(),
                command: command.to_string(),
                addr: None,
                secret: None,
            },
        };
        lock.write().map_err(io)?;
        Ok(lock)
    }

    /// Says where the server holding the lock serves, and the secret commands beside it
    /// forward with.
    pub fn serving(&mut self, addr: &str, secret: &str) -> std::io::Result<()> {
        self.holder.addr = Some(addr.to_string());
        self.holder.secret = Some(secret.to_string());
        self.write()
    }

    fn write(&mut self) -> std::io::Result<()> {
        let text = serde_json::to_string(&self.holder).map_err(std::io::Error::other)?;
        self.file.set_len(0)?;
        self.file.seek(SeekFrom::Start(0))?;
        self.file.write_all(text.as_bytes())?;
        self.file.sync_all()
    }
}

/// Creates `dir` (and its parents) if missing; a directory this creates is 0700.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(dir)
}

#[cfg(unix)]
fn try_lock(file: &File) -> std::io::Result<bool> {
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a file descriptor this process owns, with no pointers.
    let r = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if r == 0 {
        return Ok(true);
    }
    let e = std::io::Error::last_os_error();
    if e.kind() == std::io::ErrorKind::WouldBlock {
        Ok(false)
    } else {
        Err(e)
    }
}

#[cfg(not(unix))]
fn try_lock(file: &File) -> std::io::Result<bool> {
    match file.try_lock() {
        Ok(()) => Ok(true),
        Err(std::fs::TryLockError::WouldBlock) => Ok(false),
        Err(std::fs::TryLockError::Error(e)) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_with_the_first_ones_pid_and_address() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let mut first = DirLock::acquire(&data, "serve").unwrap();
        first.serving("127.0.0.1:8080", "sy_n_secret").unwrap();
        // flock is per open file description: a second open in this process conflicts too.
        let err = DirLock::acquire(&data, "import").unwrap_err();
        assert_eq!(err.code(), "store_locked");
        let LockError::Held { holder, .. } = &err else {
            panic!("{err}")
        };
        let holder = holder.as_ref().unwrap();
        assert_eq!(holder.pid, std::process::id());
        assert_eq!(holder.addr.as_deref(), Some("127.0.0.1:8080"));
        assert!(
            err.to_string().contains("serving http://127.0.0.1:8080"),
            "{err}"
        );
        assert_eq!(holder.secret.as_deref(), Some("sy_n_secret"));
        assert!(!format!("{err} {err:?}").contains("sy_n_secret"), "{err:?}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&data), 0o700);
            assert_eq!(mode(&lock_path(&data)), 0o600);
        }
        drop(first);
        let again = DirLock::acquire(&data, "import").unwrap();
        assert_eq!(again.holder.command, "import");
    }
}
