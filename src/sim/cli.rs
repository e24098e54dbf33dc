//! `vpsnap sim`: command-line flags and the foreground runner.

use super::config::SimConfig;
use super::duration::parse_duration;
use super::faults::Faults;
use super::server::start;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

/// Refuses server lists that would eat the machine's memory by typo (`1-10000000000`).
pub const MAX_SERVERS: usize = 1_000_000;

/// An id or an inclusive range of ids, `12345` or `1000-1999`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IdRange {
    pub first: u64,
    pub last: u64,
}

impl FromStr for IdRange {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let num = |t: &str| {
            t.trim()
                .parse::<u64>()
                .map_err(|_| format!("invalid server id {t:?} in {s:?}"))
        };
        let (first, last) = match s.split_once('-') {
            Some((a, b)) => (num(a)?, num(b)?),
            None => (num(s)?, num(s)?),
        };
        if first > last {
            return Err(format!("empty server range {s:?}"));
        }
        if last - first >= MAX_SERVERS as u64 {
            return Err(format!("server range {s:?} exceeds {MAX_SERVERS} ids"));
        }
        Ok(Self { first, last })
    }
}

/// A Zomro account, `login:password` (the password may contain `:`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ZomroUser {
    pub login: String,
    pub password: String,
}

impl FromStr for ZomroUser {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.split_once(':') {
            Some((login, password)) if !login.is_empty() => Ok(Self {
                login: login.into(),
                password: password.into(),
            }),
            _ => Err("expected login:password".into()),
        }
    }
}

fn parse_rate(s: &str) -> Result<f64, String> {
    let rate: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("invalid rate {s:?}"))?;
    if (0.0..=1.0).contains(&rate) {
        Ok(rate)
    } else {
        Err(format!("rate {s:?} is not within [0, 1]"))
    }
}

/// Provider simulator: serves the VpsRest and Zomro APIs from memory, with seeded faults.
#[derive(clap::Args, Clone, Debug)]
pub struct SimArgs {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, env = "VPSNAP_SIM_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Server (Zomro instance) ids: comma-separated ids and inclusive ranges, e.g.
    /// 12345,12346,1000-1999; repeatable. Default 12345 when neither this nor --servers-file is given.
    #[arg(long, env = "VPSNAP_SIM_SERVERS", value_delimiter = ',')]
    pub servers: Vec<IdRange>,

    /// File with one server id or range per line (blank lines and # comments ignored).
    #[arg(long, env = "VPSNAP_SIM_SERVERS_FILE")]
    pub servers_file: Option<PathBuf>,

    /// Accepted VpsRest bearer token; repeatable. Default: sim-token.
    #[arg(
        long = "token",
        env = "VPSNAP_SIM_TOKENS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub tokens: Vec<String>,

    /// Zomro account as login:password; repeatable. Default: sim:sim-password.
    #[arg(
        long = "zomro-user",
        env = "VPSNAP_SIM_ZOMRO_USERS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub zomro_users: Vec<ZomroUser>,

    /// Time for a new snapshot or backup to finish (e.g. 500ms, 2s, 1m; 0s = at once).
    #[arg(long, env = "VPSNAP_SIM_CREATE_DELAY", default_value = "2s", value_parser = parse_duration)]
    pub create_delay: Duration,

    /// Time a server stays `restoring` after a restore is accepted.
    #[arg(long, env = "VPSNAP_SIM_RESTORE_DELAY", default_value = "5s", value_parser = parse_duration)]
    pub restore_delay: Duration,

    /// VpsRest snapshots per server (any status counts); the next create answers 400.
    #[arg(long, env = "VPSNAP_SIM_SNAPSHOT_LIMIT", default_value_t = 5)]
    pub snapshot_limit: usize,

    /// VpsRest backups per server, manual and automatic together.
    #[arg(long, env = "VPSNAP_SIM_BACKUP_LIMIT", default_value_t = 10)]
    pub backup_limit: usize,

    /// Zomro snapshots per instance (a total, not per day).
    #[arg(long, env = "VPSNAP_SIM_ZOMRO_SNAPSHOT_LIMIT", default_value_t = 5)]
    pub zomro_snapshot_limit: usize,

    /// Automatic backups seeded per server at start (one a day, expiring a month after creation).
    #[arg(long, env = "VPSNAP_SIM_AUTO_BACKUPS", default_value_t = 0)]
    pub auto_backups: usize,

    /// Idle time after which a Zomro session lapses.
    #[arg(long, env = "VPSNAP_SIM_SESSION_IDLE", default_value = "1h", value_parser = parse_duration)]
    pub session_idle: Duration,

    /// Seed of every random choice; same seed and same request order give the same faults.
    #[arg(long, env = "VPSNAP_SIM_SEED", default_value_t = 0)]
    pub seed: u64,

    /// Fixed latency added to every API request.
    #[arg(long, env = "VPSNAP_SIM_LATENCY", default_value = "0s", value_parser = parse_duration)]
    pub latency: Duration,

    /// Random extra latency, uniform in [0, this).
    #[arg(long, env = "VPSNAP_SIM_LATENCY_JITTER", default_value = "0s", value_parser = parse_duration)]
    pub latency_jitter: Duration,

    /// Share of API requests answered 503 with an HTML body (nothing done).
    #[arg(long = "error-5xx-rate", env = "VPSNAP_SIM_ERROR_5XX_RATE", default_value_t = 0.0, value_parser = parse_rate)]
    pub error_5xx_rate: f64,

    /// Share of API requests held 90 s then closed unanswered (nothing done).
    #[arg(long, env = "VPSNAP_SIM_TIMEOUT_RATE", default_value_t = 0.0, value_parser = parse_rate)]
    pub timeout_rate: f64,

    /// Share of API requests whose connection is closed without an answer (nothing done).
    #[arg(long, env = "VPSNAP_SIM_DROP_RATE", default_value_t = 0.0, value_parser = parse_rate)]
    pub drop_rate: f64,

    /// Share of API requests answered 429 with Retry-After (nothing done).
    #[arg(long = "rate-429", env = "VPSNAP_SIM_RATE_429", default_value_t = 0.0, value_parser = parse_rate)]
    pub rate_429: f64,

    /// Retry-After seconds sent with 429 answers.
    #[arg(long, env = "VPSNAP_SIM_RETRY_AFTER_SECS", default_value_t = 1)]
    pub retry_after_secs: u64,

    /// Share of creates that are performed but whose answer is lost (connection closed or 502).
    #[arg(long, env = "VPSNAP_SIM_LOST_CREATE_RATE", default_value_t = 0.0, value_parser = parse_rate)]
    pub lost_create_rate: f64,

    /// Share of new snapshots/backups that end `failed` (Zomro `Killed`).
    #[arg(long, env = "VPSNAP_SIM_FAIL_RATE", default_value_t = 0.0, value_parser = parse_rate)]
    pub fail_rate: f64,

    /// Share of new snapshots/backups that end with an undocumented status (e.g. `archiving`).
    #[arg(long, env = "VPSNAP_SIM_UNKNOWN_STATUS_RATE", default_value_t = 0.0, value_parser = parse_rate)]
    pub unknown_status_rate: f64,

    /// Return lists in random order instead of creation order.
    #[arg(long, env = "VPSNAP_SIM_SHUFFLE_LISTS")]
    pub shuffle_lists: bool,

    /// Zomro: send a one-element list as a bare object and an empty one as {} or absent.
    #[arg(long, env = "VPSNAP_SIM_ZOMRO_QUIRKY_ELEM")]
    pub zomro_quirky_elem: bool,

    /// Share of creates performed at once whose answer is held back for --hold-create-for
    /// (the object exists and counts against the limit meanwhile); accepted restores too.
    #[arg(long, env = "VPSNAP_SIM_HOLD_CREATE_RATE", default_value_t = 0.0, value_parser = parse_rate)]
    pub hold_create_rate: f64,

    /// How long a held create answer is held back.
    #[arg(long, env = "VPSNAP_SIM_HOLD_CREATE_FOR", default_value = "0s", value_parser = parse_duration)]
    pub hold_create_for: Duration,

    /// A new snapshot/backup shows in list answers only this long after its create (it counts
    /// against the limit at once).
    #[arg(long, env = "VPSNAP_SIM_VISIBILITY_DELAY", default_value = "0s", value_parser = parse_duration)]
    pub visibility_delay: Duration,

    /// VpsRest: store snapshot and backup descriptions cut to this many characters.
    #[arg(long, env = "VPSNAP_SIM_DESCRIPTION_MAX_CHARS")]
    pub description_max_chars: Option<usize>,

    /// A deleted snapshot/backup stays listed this long as `deleting` (Zomro `Pending_delete`)
    /// and counts against the limit until it vanishes; deleting it again is accepted.
    #[arg(long, env = "VPSNAP_SIM_DELETE_LINGER", default_value = "0s", value_parser = parse_duration)]
    pub delete_linger: Duration,

    /// List answers carry at most this many results while VpsRest `count` / Zomro `p_elems`
    /// report the true total (an incomplete listing).
    #[arg(long, env = "VPSNAP_SIM_PARTIAL_LISTS", value_parser = clap::value_parser!(u64).range(1..))]
    pub partial_lists: Option<u64>,
}

fn expand(ranges: &[IdRange], out: &mut Vec<u64>) -> Result<(), String> {
    for r in ranges {
        out.extend(r.first..=r.last);
        if out.len() > MAX_SERVERS {
            return Err(format!("more than {MAX_SERVERS} servers"));
        }
    }
    Ok(())
}

/// Parses a servers file: one id or range per line (commas also separate), `#` comments.
pub fn parse_servers_file(text: &str) -> Result<Vec<IdRange>, String> {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or_default())
        .flat_map(|l| l.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(IdRange::from_str)
        .collect()
}

impl SimArgs {
    pub fn faults(&self) -> Faults {
        Faults {
            latency: self.latency,
            latency_jitter: self.latency_jitter,
            error_5xx_rate: self.error_5xx_rate,
            timeout_rate: self.timeout_rate,
            drop_rate: self.drop_rate,
            rate_429: self.rate_429,
            retry_after_secs: self.retry_after_secs,
            lost_create_rate: self.lost_create_rate,
            fail_rate: self.fail_rate,
            unknown_status_rate: self.unknown_status_rate,
            shuffle_lists: self.shuffle_lists,
            zomro_quirky_elem: self.zomro_quirky_elem,
            hold_create_rate: self.hold_create_rate,
            hold_create_for: self.hold_create_for,
            visibility_delay: self.visibility_delay,
            description_max_chars: self.description_max_chars,
            delete_linger: self.delete_linger,
            partial_lists: self
                .partial_lists
                .map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
        }
    }

    /// The configuration these flags describe (reads `--servers-file`).
    pub fn to_config(&self) -> Result<SimConfig, String> {
        let defaults = SimConfig::default();
        let mut servers = Vec::new();
        expand(&self.servers, &mut servers)?;
        if let Some(path) = &self.servers_file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            let ranges =
                parse_servers_file(&text).map_err(|e| format!("{}: {e}", path.display()))?;
            expand(&ranges, &mut servers)?;
        }
        servers.sort_unstable();
        servers.dedup();
        if servers.is_empty() && self.servers_file.is_none() {
            servers = defaults.servers;
        }
        let tokens = if self.tokens.is_empty() {
            defaults.tokens
        } else {
            self.tokens.clone()
        };
        let zomro_users = if self.zomro_users.is_empty() {
            defaults.zomro_users
        } else {
            self.zomro_users
                .iter()
                .map(|u| (u.login.clone(), u.password.clone()))
                .collect()
        };
        Ok(SimConfig {
            servers,
            tokens,
            zomro_users,
            create_delay: self.create_delay,
            restore_delay: self.restore_delay,
            snapshot_limit: self.snapshot_limit,
            backup_limit: self.backup_limit,
            zomro_snapshot_limit: self.zomro_snapshot_limit,
            auto_backups: self.auto_backups,
            session_idle: self.session_idle,
            seed: self.seed,
            faults: self.faults(),
        })
    }
}

/// Starts the simulator, prints its base URLs and serves until Ctrl-C.
pub async fn run(args: SimArgs) -> Result<(), Box<dyn std::error::Error>> {
    let config = args.to_config()?;
    let servers = config.servers.len();
    let default_credentials = args.tokens.is_empty() || args.zomro_users.is_empty();
    let handle = start(config, args.listen).await?;
    println!("VpsRest API: {}", handle.vps_rest_url());
    println!("Zomro API:   {}", handle.zomro_url());
    println!("Inspection:  {}state", handle.inspect_url());
    println!("{servers} servers; press Ctrl-C to stop");
    if default_credentials {
        println!("credentials not given on the command line use the defaults shown by --help");
    }
    tokio::signal::ctrl_c().await?;
    handle.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        sim: SimArgs,
    }

    fn parse(args: &[&str]) -> Result<SimArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("sim").chain(args.iter().copied())).map(|c| c.sim)
    }

    #[test]
    fn flag_definitions_are_consistent() {
        use clap::CommandFactory;
        let mut cmd = Cli::command();
        cmd.clone().debug_assert();
        let help = cmd.render_long_help().to_string();
        for flag in [
            "--create-delay",
            "--zomro-quirky-elem",
            "--error-5xx-rate",
            "--rate-429",
            "--hold-create-rate",
            "--hold-create-for",
            "--visibility-delay",
            "--description-max-chars",
            "--delete-linger",
            "--partial-lists",
        ] {
            assert!(help.contains(flag), "{flag} missing from --help");
        }
    }

    #[test]
    fn flags_build_the_config() {
        let args = parse(&[
            "--servers",
            "12345,12346,1000-1002",
            "--servers",
            "7",
            "--token",
            "a",
            "--token",
            "b",
            "--zomro-user",
            "me:pa:ss",
            "--create-delay",
            "500ms",
            "--restore-delay",
            "0s",
            "--drop-rate",
            "0.25",
            "--shuffle-lists",
            "--seed",
            "42",
        ])
        .expect("valid flags");
        let cfg = args.to_config().expect("config");
        assert_eq!(cfg.servers, vec![7, 1000, 1001, 1002, 12345, 12346]);
        assert_eq!(cfg.tokens, vec!["a", "b"]);
        assert_eq!(cfg.zomro_users, vec![("me".into(), "pa:ss".into())]);
        assert_eq!(cfg.create_delay, Duration::from_millis(500));
        assert_eq!(cfg.restore_delay, Duration::ZERO);
        assert_eq!(cfg.faults.drop_rate, 0.25);
        assert!(cfg.faults.shuffle_lists);
        assert_eq!(cfg.seed, 42);
        assert_eq!(cfg.snapshot_limit, 5);
        assert_eq!(cfg.backup_limit, 10);
    }

    #[test]
    fn provider_behaviour_flags() {
        let cfg = parse(&[
            "--hold-create-rate",
            "0.5",
            "--hold-create-for",
            "20s",
            "--visibility-delay",
            "3s",
            "--description-max-chars",
            "40",
            "--delete-linger",
            "1m",
            "--partial-lists",
            "2",
        ])
        .expect("valid flags")
        .to_config()
        .expect("config");
        let f = &cfg.faults;
        assert_eq!(f.hold_create_rate, 0.5);
        assert_eq!(f.hold_create_for, Duration::from_secs(20));
        assert_eq!(f.visibility_delay, Duration::from_secs(3));
        assert_eq!(f.description_max_chars, Some(40));
        assert_eq!(f.delete_linger, Duration::from_secs(60));
        assert_eq!(f.partial_lists, Some(2));
        assert!(f.validate().is_ok());
        assert!(parse(&["--partial-lists", "0"]).is_err());
        assert!(parse(&["--hold-create-rate", "2"]).is_err());
        assert!(parse(&["--delete-linger", "5"]).is_err());
    }

    #[test]
    fn defaults_and_rejections() {
        let cfg = parse(&[]).expect("no flags").to_config().expect("config");
        assert_eq!(cfg.servers, SimConfig::default().servers);
        assert_eq!(cfg.create_delay, Duration::from_secs(2));
        assert_eq!(cfg.faults, Faults::default());
        assert!(parse(&["--drop-rate", "1.5"]).is_err());
        assert!(parse(&["--servers", "5-3"]).is_err());
        assert!(parse(&["--servers", "1-99999999999"]).is_err());
        assert!(parse(&["--zomro-user", "nocolon"]).is_err());
        assert!(parse(&["--create-delay", "2"]).is_err());
    }

    #[test]
    fn servers_file_lines() {
        let ranges = parse_servers_file("# fleet\n12345\n\n1000-1001 # lab\n7,8\n").expect("parse");
        let mut ids = Vec::new();
        expand(&ranges, &mut ids).expect("expand");
        assert_eq!(ids, vec![12345, 1000, 1001, 7, 8]);
        assert!(parse_servers_file("abc\n").is_err());
    }
}
