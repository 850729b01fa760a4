//! The emulator's state file: the emulated vendors keep what they hold across
//! restarts of the process that serves them, as a real vendor would.
//!
//! Every request that may change state is answered only after a state file
//! that includes its change is on disk (writes are grouped: one write covers
//! every request that arrived while the previous one ran). The file is
//! replaced atomically (written beside it, synced, renamed), so a crash leaves
//! either the old or the new state, never a torn one. A lock file keeps two
//! processes from sharing one state file.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, watch};

use super::Emulator;

/// Version of the state file's layout.
const VERSION: u32 = 1;

/// The state file's content.
#[derive(Serialize, Deserialize)]
struct Saved {
    version: u32,
    infrai: serde_json::Value,
    infrai_byok: serde_json::Value,
    supabase: serde_json::Value,
    db9: serde_json::Value,
    capydb: serde_json::Value,
}

/// The default state file: `dbops/emulator-state.json` in the user's state
/// directory (`$XDG_STATE_HOME`, `~/.local/state` on Linux), else the local
/// data directory, else the working directory.
pub fn default_path() -> PathBuf {
    dirs::state_dir()
        .or_else(dirs::data_local_dir)
        .map(|d| d.join("dbops"))
        .unwrap_or_else(|| PathBuf::from("."))
        .join("emulator-state.json")
}

/// Why the state file cannot be used. The message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum StateFileError {
    #[error("cannot create the directory of emulator state file {path}: {source}")]
    Directory {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "emulator state file {path} is in use by another dbops process; stop it, or give this one its own file with --emulator-state"
    )]
    Locked { path: PathBuf },
    #[error("cannot lock emulator state file {path}: {source}")]
    Lock {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read emulator state file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "emulator state file {path} is not a state this version can read ({problem}); move it away to start with an empty emulator"
    )]
    Unreadable { path: PathBuf, problem: String },
}

/// The lock and path of an open state file.
pub struct StateFile {
    path: PathBuf,
    /// Held (and locked) for as long as the emulator runs.
    _lock: File,
}

impl StateFile {
    /// Locks `path` for this process and loads what it holds into `emulator`.
    pub fn open(path: &Path, emulator: &Emulator) -> Result<Self, StateFileError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StateFileError::Directory {
                path: path.to_path_buf(),
                source,
            })?;
        }
        let mut lock_path = path.as_os_str().to_owned();
        lock_path.push(".lock");
        let lock = File::create(&lock_path).map_err(|source| StateFileError::Lock {
            path: path.to_path_buf(),
            source,
        })?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(StateFileError::Locked {
                    path: path.to_path_buf(),
                });
            }
            Err(std::fs::TryLockError::Error(source)) => {
                return Err(StateFileError::Lock {
                    path: path.to_path_buf(),
                    source,
                });
            }
        }
        match std::fs::read(path) {
            Ok(bytes) => load(emulator, &bytes).map_err(|problem| StateFileError::Unreadable {
                path: path.to_path_buf(),
                problem,
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(StateFileError::Read {
                    path: path.to_path_buf(),
                    source,
                });
            }
        }
        Ok(Self {
            path: path.to_path_buf(),
            _lock: lock,
        })
    }

    /// Where the state is kept.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn load(emulator: &Emulator, bytes: &[u8]) -> Result<(), String> {
    let saved: Saved = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    if saved.version != VERSION {
        return Err(format!("layout version {}", saved.version));
    }
    let err = |e: serde_json::Error| e.to_string();
    emulator.infrai.load(saved.infrai).map_err(err)?;
    emulator.infrai.byok.load(saved.infrai_byok).map_err(err)?;
    emulator.supabase.load(saved.supabase).map_err(err)?;
    emulator.db9.load(saved.db9).map_err(err)?;
    emulator.capydb.load(saved.capydb).map_err(err)?;
    Ok(())
}

/// Everything the emulator holds, as the state file's bytes.
pub fn snapshot(emulator: &Emulator) -> Result<Vec<u8>, serde_json::Error> {
    let saved = Saved {
        version: VERSION,
        infrai: emulator.infrai.save()?,
        infrai_byok: emulator.infrai.byok.save()?,
        supabase: emulator.supabase.save()?,
        db9: emulator.db9.save()?,
        capydb: emulator.capydb.save()?,
    };
    serde_json::to_vec(&saved)
}

/// Replaces `path` with `bytes`: a temporary file beside it, synced, renamed
/// over it, and the directory synced.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut temp = tempfile::NamedTempFile::new_in(dir)?;
    temp.write_all(bytes)?;
    temp.as_file().sync_all()?;
    temp.persist(path).map_err(|e| e.error)?;
    // The rename is durable once the directory is synced (not possible everywhere).
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// The last write: up to which change, and whether it failed.
#[derive(Clone, Debug, Default)]
struct Flushed {
    through: u64,
    error: Option<String>,
}

/// What the writer task and the handles share.
struct Shared {
    changes: AtomicU64,
    wake: Notify,
    closed: std::sync::atomic::AtomicBool,
    flushed: watch::Sender<Flushed>,
}

/// Groups state-file writes and lets requests wait for theirs. When the last
/// handle is dropped, the writer finishes and releases the file's lock.
pub struct Persister {
    shared: Arc<Shared>,
}

impl Drop for Persister {
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::SeqCst);
        self.shared.wake.notify_one();
    }
}

impl Persister {
    /// Starts the writer task for `emulator`, writing into `file`.
    pub fn start(emulator: Emulator, file: StateFile) -> Arc<Self> {
        let (flushed, _) = watch::channel(Flushed::default());
        let shared = Arc::new(Shared {
            changes: AtomicU64::new(0),
            wake: Notify::new(),
            closed: std::sync::atomic::AtomicBool::new(false),
            flushed,
        });
        let writer = shared.clone();
        tokio::spawn(async move {
            let file = Arc::new(file);
            loop {
                writer.wake.notified().await;
                let through = writer.changes.load(Ordering::SeqCst);
                let written = writer.flushed.borrow().through;
                if through > written {
                    let result = match snapshot(&emulator) {
                        Ok(bytes) => {
                            let file = file.clone();
                            tokio::task::spawn_blocking(move || {
                                write_atomically(file.path(), &bytes).map_err(|e| e.to_string())
                            })
                            .await
                            .unwrap_or_else(|e| Err(e.to_string()))
                        }
                        Err(e) => Err(e.to_string()),
                    };
                    if let Err(error) = &result {
                        tracing::error!(path = %file.path().display(), error, "cannot write the emulator state file");
                    }
                    writer.flushed.send_replace(Flushed {
                        through,
                        error: result.err(),
                    });
                }
                if writer.closed.load(Ordering::SeqCst) {
                    // Every handle is gone: drop the file, and with it the lock.
                    return;
                }
            }
        });
        Arc::new(Self { shared })
    }

    /// Records a change and waits until a state file that includes it is
    /// written; `Err` when that write failed.
    pub async fn commit(&self) -> Result<(), String> {
        let shared = &self.shared;
        let mine = shared.changes.fetch_add(1, Ordering::SeqCst) + 1;
        let mut flushed = shared.flushed.subscribe();
        shared.wake.notify_one();
        let done = flushed
            .wait_for(|f| f.through >= mine)
            .await
            .map_err(|_| "the emulator state writer stopped".to_string())?;
        match &done.error {
            None => Ok(()),
            Some(error) => Err(error.clone()),
        }
    }
}

/// Middleware: a request that may change state is answered once the change is saved.
pub async fn commit(
    State(persister): State<Arc<Persister>>,
    request: Request,
    next: Next,
) -> Response {
    let writes = !matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    let response = next.run(request).await;
    if !writes {
        return response;
    }
    match persister.commit().await {
        Ok(()) => response,
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({
                "error": { "code": "STATE_NOT_SAVED", "message": "the emulator could not save its state; retry" }
            })),
        )
            .into_response(),
    }
}
