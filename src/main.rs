//! `dbops`: the operator (`run`), its CRDs (`crdgen`) and the vendor API emulators (`emulator`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use dbops::controllers::Settings;
use dbops::emulator::faults::FaultsAccess;
use dbops::emulator::real::RealDatabases;
use dbops::emulator::{DEFAULT_LISTEN, Emulator, EmulatorConfig};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    name = "dbops",
    version,
    about = "Kubernetes operator for managed Postgres"
)]
struct Cli {
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "DBOPS_LOG_FORMAT")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the operator against the current kube context (or in-cluster config).
    ///
    /// By default it also serves the vendor API emulators on 127.0.0.1:8470, so a
    /// DatabaseProvider with `endpoint: http://127.0.0.1:8470/infrai` works with no
    /// vendor account. The host of the chart's emulator Service
    /// (`dbops-emulator.dbops-system.svc`) reaches them too, so
    /// deploy/examples/ work both here and with the chart.
    Run(RunArgs),
    /// Print every CRD as YAML (or write one file per CRD with --out-dir).
    Crdgen {
        /// Write `<crd-name>.yaml` files into this directory instead of printing.
        #[arg(long)]
        out_dir: Option<PathBuf>,
    },
    /// Print the capability matrix (kinds x operations x provider APIs) as Markdown.
    Capabilities,
    /// Serve the vendor API emulators (/infrai, /supabase, /db9, /capydb) until interrupted.
    Emulator(EmulatorArgs),
    /// The Helm chart's pre-delete hook: when no dbops resource is left,
    /// delete the chart's kept emulator provider, its Secret and volume;
    /// otherwise keep them for a later install. Never fails the uninstall.
    #[command(hide = true)]
    BeforeUninstall {
        /// The release namespace (of the Secret and the volume claim).
        #[arg(long, env = "POD_NAMESPACE")]
        namespace: String,
        #[arg(long)]
        provider: Option<String>,
        #[arg(long)]
        secret: Option<String>,
        #[arg(long)]
        volume_claim: Option<String>,
    },
}

#[derive(clap::Args)]
struct RunArgs {
    /// Serve the built-in vendor API emulators alongside the operator.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, env = "DBOPS_EMULATOR")]
    emulator: bool,
    #[command(flatten)]
    emulator_args: EmulatorArgs,
    /// Vendor endpoints with this host reach the built-in emulator (at the
    /// endpoint's port) instead of a DNS lookup: the name of the chart's
    /// emulator Service, so one provider manifest works in and out of a
    /// cluster. Empty: none.
    #[arg(long = "emulator-host", default_value = dbops::emulator::IN_CLUSTER_HOST, env = "DBOPS_EMULATOR_HOST")]
    emulator_host: String,
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, default_value = "127.0.0.1:8080", env = "DBOPS_METRICS_LISTEN")]
    metrics_listen: SocketAddr,
    /// Watch only these namespaces (repeat the flag or separate with commas);
    /// every namespace when left out.
    #[arg(long = "namespace", value_delimiter = ',', env = "DBOPS_NAMESPACES")]
    namespaces: Vec<String>,
    /// Elect a leader through a coordination.k8s.io Lease, so that only one of
    /// several replicas reconciles.
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set, env = "DBOPS_LEADER_ELECTION")]
    leader_election: bool,
    /// Name of the leader election Lease.
    #[arg(long, default_value = "dbops-leader", env = "DBOPS_LEASE_NAME")]
    lease_name: String,
    /// Namespace of the leader election Lease (defaults to the pod's namespace).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    lease_namespace: String,
    /// How long the Lease is valid without renewal: a standby takes over this long
    /// after a leader dies (at once when the leader shuts down cleanly).
    #[arg(long, default_value = "15s", value_parser = parse_duration, env = "DBOPS_LEASE_DURATION")]
    lease_duration: Duration,
    /// How often Ready objects are re-read from the vendor (jittered ±10%), e.g. 10m, 90s.
    #[arg(long, default_value = "10m", value_parser = parse_duration, env = "DBOPS_RESYNC_INTERVAL")]
    resync_interval: Duration,
    /// Most reconciles each controller runs at once. Size it to the API
    /// server: more helps a cold start until the API server's write rate is
    /// the limit (see the README's scale figures).
    #[arg(long, default_value_t = dbops::controllers::Settings::default().concurrency, env = "DBOPS_CONCURRENCY", value_parser = clap::value_parser!(u16).range(1..=1024))]
    concurrency: u16,
    /// On SIGTERM or SIGINT, how long in-flight reconciles may finish before
    /// they are abandoned (safely: the next start resumes them) and the leader
    /// Lease is released.
    #[arg(long, default_value = "5s", value_parser = parse_duration, env = "DBOPS_SHUTDOWN_GRACE")]
    shutdown_grace: Duration,
}

#[derive(clap::Args)]
struct EmulatorArgs {
    /// Listen address of the emulators (loopback only unless you mean it).
    #[arg(long = "emulator-listen", default_value = DEFAULT_LISTEN, env = "DBOPS_EMULATOR_LISTEN")]
    listen: String,
    /// File the emulated vendors keep their state in, so it survives restarts
    /// (default: `dbops/emulator-state.json` in your state directory, e.g.
    /// ~/.local/state). One process at a time may use a file.
    #[arg(long = "emulator-state", env = "DBOPS_EMULATOR_STATE")]
    state: Option<PathBuf>,
    /// Keep the emulated vendors' state in memory only: it is gone when the
    /// process stops.
    #[arg(
        long = "emulator-in-memory",
        env = "DBOPS_EMULATOR_IN_MEMORY",
        conflicts_with = "state"
    )]
    in_memory: bool,
    /// Bearer key one emulated API accepts instead of its default, as
    /// `API=KEY` (e.g. `infrai=ifr_pk_proj_mykey`); repeat for several APIs
    /// (or for several keys of one API).
    #[arg(
        long = "emulator-api-key",
        value_name = "API=KEY",
        env = "DBOPS_EMULATOR_API_KEYS",
        value_delimiter = ',',
        value_parser = parse_api_key,
        hide_env_values = true
    )]
    api_keys: Vec<(String, String)>,
    /// Serve only what the vendor documents show: answers carry only
    /// documented fields (plus the few the dbops clients are documented to
    /// assume), undocumented request fields are refused and undocumented
    /// endpoints answer 404. For checking a client against the contract.
    #[arg(long = "emulator-strict", env = "DBOPS_EMULATOR_STRICT")]
    strict: bool,
    /// PostgreSQL server (`postgres://admin:password@host:5432/postgres`, as
    /// a role that may create roles and databases) on which the emulated
    /// vendors create a real database and role for every project, branch and
    /// restore, so the connection URIs they hand out connect (without it they
    /// name hosts that do not exist).
    #[arg(
        long = "emulator-postgres",
        value_name = "URL",
        env = "DBOPS_EMULATOR_POSTGRES",
        hide_env_values = true
    )]
    postgres: Option<String>,
    /// Key that `PUT /_faults/<api>` (fault injection) must carry, as
    /// `Authorization: Bearer <KEY>`, instead of the emulated API's own key;
    /// repeat for several (comma-separated in the variable).
    #[arg(
        long = "emulator-faults-key",
        value_name = "KEY",
        env = "DBOPS_EMULATOR_FAULTS_KEY",
        value_delimiter = ',',
        value_parser = parse_faults_key,
        hide_env_values = true
    )]
    faults_keys: Vec<String>,
    /// Let anyone who reaches the emulator set faults (`PUT /_faults/<api>`)
    /// without a key. Without this flag a fault request must carry the key of
    /// the API it sets faults for (or a --emulator-faults-key). Default: false
    /// for `dbops emulator`; for `dbops run`, true while the emulator listens
    /// on loopback only.
    #[arg(
        long = "emulator-allow-faults",
        env = "DBOPS_EMULATOR_ALLOW_FAULTS",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        action = clap::ArgAction::Set
    )]
    allow_faults: Option<bool>,
}

impl EmulatorArgs {
    /// Who may set faults: the flags, else anyone when `open_by_default`
    /// (`dbops run` on loopback), else whoever has the API's key.
    fn faults_access(&self, open_by_default: bool) -> Result<FaultsAccess, String> {
        match (self.allow_faults, self.faults_keys.is_empty()) {
            (Some(true), false) => Err(
                "--emulator-allow-faults and --emulator-faults-key exclude each other".to_string(),
            ),
            (_, false) => Ok(FaultsAccess::Keys(self.faults_keys.clone())),
            (Some(true), true) => Ok(FaultsAccess::Open),
            (Some(false), true) => Ok(FaultsAccess::ApiKeys),
            (None, true) if open_by_default => Ok(FaultsAccess::Open),
            (None, true) => Ok(FaultsAccess::ApiKeys),
        }
    }

    /// The emulator's settings: the default key of every API, replaced by
    /// the keys given for it.
    fn config(&self) -> Result<EmulatorConfig, String> {
        let mut by_api: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
        for (api, key) in &self.api_keys {
            by_api.entry(api).or_default().push(key);
        }
        let config = by_api
            .into_iter()
            .try_fold(EmulatorConfig::default(), |config, (api, keys)| {
                config.with_keys(api, keys)
            })
            .map_err(|e| e.to_string())?;
        match &self.postgres {
            Some(url) => {
                let real = RealDatabases::new(url, dbops::emulator::real::CONNECT_TIMEOUT)?;
                Ok(config.with_real_databases(std::sync::Arc::new(real)))
            }
            None => Ok(config),
        }
    }
}

fn parse_api_key(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((api, key)) if !api.is_empty() && !key.is_empty() => {
            Ok((api.to_string(), key.to_string()))
        }
        _ => Err("expected API=KEY, e.g. infrai=ifr_pk_proj_mykey".to_string()),
    }
}

fn parse_faults_key(s: &str) -> Result<String, String> {
    if s.trim().is_empty() {
        Err("the faults key must not be empty".to_string())
    } else {
        Ok(s.to_string())
    }
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let d: kube::core::Duration = s
        .parse()
        .map_err(|e| format!("invalid duration {s:?}: {e}"))?;
    if d.is_negative() {
        return Err("duration must be positive".into());
    }
    Ok(d.into())
}

fn init_tracing(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,kube=warn,hyper=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

/// Resolves on the first SIGTERM or SIGINT (Ctrl-C). A second one ends the
/// process at once, for when a clean shutdown takes longer than the user wants.
async fn shutdown_signal() {
    wait_for_signal().await;
    tracing::info!("shutdown requested; a second signal stops at once");
    tokio::spawn(async {
        wait_for_signal().await;
        tracing::warn!("second shutdown signal: exiting now");
        std::process::exit(130);
    });
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Starts the emulators on `args.listen`. `open_faults_on_loopback`: with
/// neither faults flag, let anyone set faults while the listener is on a
/// loopback address (`dbops run`'s built-in emulator).
async fn start_emulator(
    args: &EmulatorArgs,
    open_faults_on_loopback: bool,
) -> Result<SocketAddr, String> {
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .map_err(|e| {
            format!(
                "cannot listen on {} for the emulator: {e} (use --emulator-listen or --emulator=false)",
                args.listen
            )
        })?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("cannot listen on {} for the emulator: {e}", args.listen))?;
    let faults_access = args.faults_access(open_faults_on_loopback && addr.ip().is_loopback())?;
    tracing::info!(
        "fault injection (PUT /_faults/<api>) {}",
        faults_access.describe()
    );
    let config = args.config()?.with_faults_access(faults_access);
    if let Some(real) = config.real_databases() {
        real.check().await?;
        tracing::info!(
            host = real.host(),
            port = real.port(),
            "emulated vendors make real databases on this PostgreSQL server"
        );
    }
    let emulator = if args.in_memory {
        tracing::info!("emulator state is kept in memory only");
        Emulator::new(&config)
    } else {
        let path = args
            .state
            .clone()
            .unwrap_or_else(dbops::emulator::persist::default_path);
        let emulator = Emulator::with_state_file(&config, &path).map_err(|e| e.to_string())?;
        tracing::info!(path = %path.display(), "emulator state is kept in a file and survives restarts");
        emulator
    };
    if args.strict {
        emulator.set_strict(true);
        tracing::info!("emulator serves only what the vendor documents show (strict mode)");
    }
    tokio::spawn(async move {
        if let Err(error) = emulator.serve(listener).await {
            tracing::error!(%error, "emulator stopped");
        }
    });
    tracing::info!(
        %addr,
        "vendor API emulators serving http://{addr}/infrai, /supabase, /db9 and /capydb"
    );
    Ok(addr)
}

async fn run(args: RunArgs) -> Result<(), String> {
    dbops::providers::http::ensure_crypto_provider();
    let mut vendor_hosts = Vec::new();
    if args.emulator {
        let addr = start_emulator(&args.emulator_args, true).await?;
        if !args.emulator_host.is_empty() {
            let ip = if addr.ip().is_unspecified() {
                std::net::Ipv4Addr::LOCALHOST.into()
            } else {
                addr.ip()
            };
            tracing::info!(host = %args.emulator_host, %ip, "vendor endpoints on this host reach the built-in emulator");
            vendor_hosts.push((args.emulator_host.clone(), SocketAddr::new(ip, addr.port())));
        }
    }
    let metrics = std::sync::Arc::new(dbops::metrics::Metrics::default());
    let config = kube::Config::infer()
        .await
        .map_err(|e| format!("cannot find Kubernetes (kubeconfig or in-cluster config): {e}"))?;
    let client = dbops::operator::counted_client(config, metrics.clone())
        .map_err(|e| format!("cannot reach Kubernetes (kubeconfig or in-cluster config): {e}"))?;
    let version = client
        .apiserver_version()
        .await
        .map_err(|e| format!("cannot reach the Kubernetes API server: {e}"))?;
    tracing::info!(server = %version.git_version, "connected to Kubernetes");
    let instance = std::env::var("POD_NAME")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| format!("dbops-{}", std::process::id()));
    let leader_election = args
        .leader_election
        .then(|| dbops::operator::LeaderElection {
            lease_name: args.lease_name.clone(),
            lease_namespace: args.lease_namespace.clone(),
            identity: instance.clone(),
            lease_duration: args.lease_duration,
            renew_grace: (args.lease_duration / 3).max(Duration::from_secs(1)),
        });
    let options = dbops::operator::Options {
        settings: Settings {
            resync_interval: args.resync_interval,
            concurrency: args.concurrency,
            vendor_hosts,
            ..Settings::default()
        },
        metrics_listen: Some(args.metrics_listen),
        instance: Some(instance),
        namespaces: args
            .namespaces
            .into_iter()
            .filter(|n| !n.is_empty())
            .collect(),
        own_namespace: Some(args.lease_namespace.clone()),
        leader_election,
        shutdown_grace: Some(args.shutdown_grace),
        metrics: Some(metrics),
    };
    dbops::operator::run(client, options, shutdown_signal()).await;
    Ok(())
}

/// Runs the chart's pre-delete hook; says what it did, and never fails
/// (when it cannot decide, it deletes nothing and the uninstall goes on).
async fn before_uninstall(kept: &dbops::uninstall::Kept) {
    dbops::providers::http::ensure_crypto_provider();
    let client = match kube::Client::try_default().await {
        Ok(client) => client,
        Err(e) => {
            let reason = dbops::controllers::kube_error::describe(&e);
            tracing::warn!("cannot reach Kubernetes ({reason}); the chart's kept objects stay");
            return;
        }
    };
    match dbops::uninstall::before_uninstall(&client, kept).await {
        Ok(outcome) => tracing::info!("{outcome}"),
        Err(e) => tracing::warn!("{e}; the chart's kept objects stay"),
    }
}

fn crdgen(out_dir: Option<PathBuf>) -> Result<(), String> {
    match out_dir {
        None => {
            let yaml = dbops::crdgen::render_all().map_err(|e| e.to_string())?;
            print!("{yaml}");
        }
        Some(dir) => {
            std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            for (name, yaml) in dbops::crdgen::render_files().map_err(|e| e.to_string())? {
                let path = dir.join(name);
                std::fs::write(&path, yaml).map_err(|e| format!("{}: {e}", path.display()))?;
            }
        }
    }
    Ok(())
}

async fn emulator(args: EmulatorArgs) -> Result<(), String> {
    start_emulator(&args, false).await?;
    shutdown_signal().await;
    Ok(())
}

/// With `--features dhat-heap`, every allocation is profiled, and
/// `dhat-heap.json` is written to the working directory on a clean exit.
#[cfg(feature = "dhat-heap")]
#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

#[tokio::main]
async fn main() -> ExitCode {
    #[cfg(feature = "dhat-heap")]
    let _profiler = dhat::Profiler::new_heap();
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    let result = match cli.command {
        Command::Run(args) => run(args).await,
        Command::Crdgen { out_dir } => crdgen(out_dir),
        Command::Emulator(args) => emulator(args).await,
        Command::Capabilities => {
            print!("{}", dbops::providers::matrix::markdown());
            Ok(())
        }
        Command::BeforeUninstall {
            namespace,
            provider,
            secret,
            volume_claim,
        } => {
            let kept = dbops::uninstall::Kept {
                namespace,
                provider,
                secret,
                volume_claim,
            };
            before_uninstall(&kept).await;
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("dbops: {message}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn emulator_args(args: &[&str]) -> Result<EmulatorArgs, clap::Error> {
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            emulator: EmulatorArgs,
        }
        let argv = std::iter::once("dbops").chain(args.iter().copied());
        Cli::try_parse_from(argv).map(|cli| cli.emulator)
    }

    #[test]
    fn emulator_keys_are_set_per_api_and_default_elsewhere() {
        let args = emulator_args(&[
            "--emulator-api-key",
            "db9=a",
            "--emulator-api-key",
            "db9=b",
            "--emulator-api-key",
            "capydb=capy_live_x",
        ])
        .unwrap();
        let config = args.config().unwrap();
        assert_eq!(config.keys("db9"), ["a", "b"]);
        assert_eq!(config.keys("capydb"), ["capy_live_x"]);
        assert_eq!(
            config.keys("infrai"),
            EmulatorConfig::default().keys("infrai")
        );
    }

    #[test]
    fn real_databases_are_off_unless_a_server_is_given() {
        let config = emulator_args(&[]).unwrap().config().unwrap();
        assert!(config.real_databases().is_none());
        let args = emulator_args(&[
            "--emulator-postgres",
            "postgres://admin:s3cret@127.0.0.1:5432/postgres?sslmode=disable",
        ])
        .unwrap();
        let config = args.config().unwrap();
        let real = config.real_databases().unwrap();
        assert_eq!((real.host(), real.port()), ("127.0.0.1", 5432));
        let bad = emulator_args(&["--emulator-postgres", "https://admin:s3cret@db"]).unwrap();
        let error = bad.config().unwrap_err();
        assert!(error.contains("--emulator-postgres"), "{error}");
        assert!(!error.contains("s3cret"), "{error}");
    }

    #[test]
    fn strict_mode_is_off_unless_asked_for() {
        assert!(!emulator_args(&[]).unwrap().strict);
        assert!(emulator_args(&["--emulator-strict"]).unwrap().strict);
    }

    #[test]
    fn faults_need_a_key_unless_opened_on_purpose() {
        use FaultsAccess::*;
        let access = |args: &[&str], open_by_default: bool| {
            emulator_args(args).unwrap().faults_access(open_by_default)
        };
        // `dbops emulator` (never open by default), and the chart's flag.
        assert_eq!(access(&[], false), Ok(ApiKeys));
        assert_eq!(
            access(&["--emulator-allow-faults=false"], false),
            Ok(ApiKeys)
        );
        assert_eq!(access(&["--emulator-allow-faults"], false), Ok(Open));
        assert_eq!(access(&["--emulator-allow-faults=true"], false), Ok(Open));
        assert_eq!(
            access(
                &["--emulator-faults-key", "k1", "--emulator-faults-key", "k2"],
                false
            ),
            Ok(Keys(vec!["k1".into(), "k2".into()]))
        );
        // `dbops run` on loopback is open unless told otherwise.
        assert_eq!(access(&[], true), Ok(Open));
        assert_eq!(
            access(&["--emulator-allow-faults=false"], true),
            Ok(ApiKeys)
        );
        assert_eq!(
            access(&["--emulator-faults-key", "k"], true),
            Ok(Keys(vec!["k".into()]))
        );
        // A key with the chart's explicit `=false` is the key.
        assert_eq!(
            access(
                &[
                    "--emulator-allow-faults=false",
                    "--emulator-faults-key",
                    "k"
                ],
                false
            ),
            Ok(Keys(vec!["k".into()]))
        );
        let both = access(
            &["--emulator-allow-faults", "--emulator-faults-key", "k"],
            false,
        );
        assert!(both.unwrap_err().contains("exclude each other"));
        assert!(emulator_args(&["--emulator-faults-key", " "]).is_err());
        // `--emulator-allow-faults false` (no `=`) is not a way to pass false.
        assert!(emulator_args(&["--emulator-allow-faults", "false"]).is_err());
    }

    #[test]
    fn malformed_and_unknown_emulator_keys_are_refused() {
        assert!(emulator_args(&["--emulator-api-key", "no-equals"]).is_err());
        assert!(emulator_args(&["--emulator-api-key", "db9="]).is_err());
        let unknown = emulator_args(&["--emulator-api-key", "oracle=k"]).unwrap();
        let error = unknown.config().unwrap_err();
        assert!(error.contains("no API named \"oracle\""), "{error}");
    }
}
