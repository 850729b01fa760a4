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

use super::scaffold::Served;

/// The emulated APIs whose state the file keeps, in the order it is written.
pub type Apis = [Arc<dyn Served>];

/// Version of the state file's layout.
const VERSION: u32 = 1;

/// The state file's content: the layout version, and each part of the
/// emulator's state under its key (`infrai`, `infrai_byok`, `supabase`, ...).
#[derive(Serialize, Deserialize)]
struct Saved {
    version: u32,
    #[serde(flatten)]
    sections: serde_json::Map<String, serde_json::Value>,
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
    /// Locks `path` for this process and loads what it holds into `apis`.
    pub fn open(path: &Path, apis: &Apis) -> Result<Self, StateFileError> {
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
            Ok(bytes) => load(apis, &bytes).map_err(|problem| StateFileError::Unreadable {
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

fn load(apis: &Apis, bytes: &[u8]) -> Result<(), String> {
    let saved: Saved = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    if saved.version != VERSION {
        return Err(format!("layout version {}", saved.version));
    }
    let mut sections = saved.sections;
    for api in apis {
        for (key, state) in api.sections() {
            let section = sections
                .remove(key)
                .ok_or_else(|| format!("missing field `{key}`"))?;
            state.load(section).map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

/// Everything `apis` hold, as the state file's bytes.
pub fn snapshot(apis: &Apis) -> Result<Vec<u8>, serde_json::Error> {
    let mut sections = serde_json::Map::new();
    for api in apis {
        for (key, state) in api.sections() {
            sections.insert(key.to_string(), state.save()?);
        }
    }
    let saved = Saved {
        version: VERSION,
        sections,
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
    /// Starts the writer task for `apis`, writing into `file`.
    pub fn start(apis: Vec<Arc<dyn Served>>, file: StateFile) -> Arc<Self> {
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
                    let result = match snapshot(&apis) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::emulator::{Emulator, EmulatorConfig};

    /// The APIs of `emulator`, as its state file keeps them.
    fn apis(emulator: &Emulator) -> Vec<Arc<dyn Served>> {
        emulator.apis().map(|(_, api)| api).collect()
    }

    #[test]
    fn the_state_file_keeps_one_key_per_part_of_the_state() {
        let emulator = Emulator::new(&EmulatorConfig::default());
        let password = emulator.capydb.add_project("prj-1");
        let bytes = snapshot(&apis(&emulator)).unwrap();
        let saved: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        let mut keys: Vec<&str> = saved
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "capydb",
                "db9",
                "infrai",
                "infrai_byok",
                "supabase",
                "version"
            ]
        );
        assert_eq!(saved["version"], VERSION);

        let restored = Emulator::new(&EmulatorConfig::default());
        load(&apis(&restored), &bytes).unwrap();
        assert_eq!(restored.capydb.project_password("prj-1"), Some(password));
    }

    #[test]
    fn a_state_file_in_the_first_layout_loads() {
        // Written by hand in the order the first layout's writer used.
        let file = r#"{"version":1,
            "infrai":{"next_seq":2,"projects":{},"branches":{},"snapshots":{},"idempotency":{}},
            "infrai_byok":{"seq":0,"keys":{},"policy":{"mode":"byok_only"},"idempotency":{}},
            "supabase":{"next_seq":0,"provisioning_polls":5,"projects":{},"branches":{}},
            "db9":{"next_seq":0,"databases":{},"backups":{},"restores":{},"restore_keys":{},"read_only_keys":["ro"],"database_creates":3},
            "capydb":{"projects":{},"previews":{},"jobs":{}}}"#;
        let emulator = Emulator::new(&EmulatorConfig::default());
        load(&apis(&emulator), file.as_bytes()).unwrap();
        assert_eq!(emulator.db9.database_create_count(), 3);
        assert_eq!(emulator.infrai.byok.policy()["mode"], "byok_only");
        let saved: serde_json::Value =
            serde_json::from_slice(&snapshot(&apis(&emulator)).unwrap()).unwrap();
        assert_eq!(saved["infrai"]["next_seq"], 2);
        assert_eq!(saved["supabase"]["provisioning_polls"], 5);
    }

    #[test]
    fn a_state_file_missing_a_part_or_of_another_version_is_refused() {
        let emulator = Emulator::new(&EmulatorConfig::default());
        let mut saved: serde_json::Value =
            serde_json::from_slice(&snapshot(&apis(&emulator)).unwrap()).unwrap();
        saved["version"] = serde_json::json!(2);
        let problem = load(&apis(&emulator), saved.to_string().as_bytes()).unwrap_err();
        assert_eq!(problem, "layout version 2");

        saved["version"] = serde_json::json!(VERSION);
        saved.as_object_mut().unwrap().remove("db9");
        let problem = load(&apis(&emulator), saved.to_string().as_bytes()).unwrap_err();
        assert!(problem.contains("db9"), "{problem}");
    }
}
