//! A real PostgreSQL server for tests: `DBOPS_TEST_POSTGRES_URL` when set (an
//! admin URL with its password), else a private server this process starts
//! in a temporary directory with the machine's `initdb` and `postgres`
//! (`scripts/fetch-tools.sh` installs them), on a free loopback port, with
//! password (SCRAM) authentication over TCP. The server stops when the test
//! process exits: a watchdog shell holds a pipe from this process and stops
//! the server when the pipe closes.
//!
//! Without either, the tests that need it fail and say how to get one.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The admin password of a private server.
pub const ADMIN_PASSWORD: &str = "dbops-test-admin";

/// A server the tests can use.
pub struct TestServer {
    /// `postgres://user@127.0.0.1:port/postgres?sslmode=disable` (no password).
    pub endpoint: String,
    /// The admin password.
    pub password: String,
    _watchdog: Option<Child>,
    /// The private server's directory; the watchdog removes it.
    _dir: Option<PathBuf>,
}

impl TestServer {
    /// The admin URL with its password, for direct connections.
    pub fn admin_url(&self) -> String {
        let mut url = url::Url::parse(&self.endpoint).expect("endpoint is a URL");
        url.set_password(Some(&self.password))
            .expect("the endpoint takes a password");
        url.to_string()
    }
}

static SERVER: OnceLock<Result<TestServer, String>> = OnceLock::new();

/// The process's test server, started on first use.
pub fn server() -> &'static TestServer {
    match SERVER.get_or_init(start) {
        Ok(server) => server,
        Err(why) => panic!(
            "these tests need a PostgreSQL server and none could be started: {why}. \
             Install the server (./scripts/fetch-tools.sh does, or apt-get install postgresql), \
             or set DBOPS_TEST_POSTGRES_URL=postgres://admin:password@host:port/postgres"
        ),
    }
}

fn start() -> Result<TestServer, String> {
    if let Ok(url) = std::env::var("DBOPS_TEST_POSTGRES_URL") {
        let mut parsed =
            url::Url::parse(&url).map_err(|e| format!("DBOPS_TEST_POSTGRES_URL: {e}"))?;
        let password = parsed.password().unwrap_or_default().to_string();
        let _ = parsed.set_password(None);
        return Ok(TestServer {
            endpoint: parsed.to_string(),
            password,
            _watchdog: None,
            _dir: None,
        });
    }
    let bin = binaries().ok_or("no initdb on PATH or under /usr/lib/postgresql/*/bin")?;
    let dir = tempfile::Builder::new()
        .prefix("dbops-pg-")
        .tempdir()
        .map_err(|e| e.to_string())?;
    let data = dir.path().join("data");
    let root = is_root();
    if root {
        // initdb and postgres refuse to run as root.
        chown_postgres(dir.path())?;
    }
    let pwfile = dir.path().join("pw");
    std::fs::write(&pwfile, ADMIN_PASSWORD).map_err(|e| e.to_string())?;
    if root {
        chown_postgres(&pwfile)?;
    }
    let status = as_postgres(root, &bin.join("initdb"))
        .args(["-D"])
        .arg(&data)
        .args(["-U", "postgres", "--pwfile"])
        .arg(&pwfile)
        .args([
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "-E",
            "UTF8",
            "--no-sync",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("initdb: {e}"))?;
    if !status.status.success() {
        return Err(format!(
            "initdb failed: {}",
            String::from_utf8_lossy(&status.stderr)
        ));
    }
    let port = free_port()?;
    let postgres = bin.join("postgres");
    let script = format!(
        "{postgres} -D {data} -p {port} -k {socket} -c listen_addresses=127.0.0.1 -c fsync=off \
         -c max_connections=200 >{log} 2>&1 & pid=$!; cat >/dev/null; kill -INT $pid; wait $pid; rm -rf {dir}",
        postgres = postgres.display(),
        data = data.display(),
        socket = dir.path().display(),
        log = dir.path().join("log").display(),
        dir = dir.path().display(),
    );
    let mut watchdog = as_postgres(root, Path::new("/bin/sh"))
        .args(["-c", &script])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("starting postgres: {e}"))?;
    // Keep the pipe open for the life of the process.
    if let Some(stdin) = watchdog.stdin.as_mut() {
        let _ = stdin.flush();
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            let log = std::fs::read_to_string(dir.path().join("log")).unwrap_or_default();
            return Err(format!("postgres did not start: {log}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(TestServer {
        endpoint: format!("postgres://postgres@127.0.0.1:{port}/postgres?sslmode=disable"),
        password: ADMIN_PASSWORD.to_string(),
        _watchdog: Some(watchdog),
        _dir: Some(dir.keep()),
    })
}

fn binaries() -> Option<PathBuf> {
    let mut candidates: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect())
        .unwrap_or_default();
    let mut debian: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|dirs| dirs.flatten().map(|d| d.path().join("bin")).collect())
        .unwrap_or_default();
    debian.sort();
    debian.reverse();
    candidates.extend(debian);
    candidates
        .into_iter()
        .map(|dir| {
            std::fs::canonicalize(dir.join("initdb")).map(|p| p.parent().map(Path::to_path_buf))
        })
        .find_map(|found| found.ok().flatten())
        .filter(|dir| dir.join("postgres").exists())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
        .unwrap_or(false)
}

fn chown_postgres(path: &Path) -> Result<(), String> {
    let status = Command::new("chown")
        .args(["-R", "postgres"])
        .arg(path)
        .status()
        .map_err(|e| e.to_string())?;
    status
        .success()
        .then_some(())
        .ok_or_else(|| "chown postgres failed (is there a postgres user?)".to_string())
}

fn as_postgres(root: bool, program: &Path) -> Command {
    if root {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

fn free_port() -> Result<u16, String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| e.to_string())
}
