//! The Debian package (`cargo deb`): installed with dpkg on this machine, every file's owner and
//! mode, the service left disabled, `check-config` and the ledger as the payrecon user, the
//! units verified where they are installed, removal keeping the config and the ledger, a
//! reinstall keeping an edited config, purge removing the config and keeping the ledger
//! (docs/operations.md "The Debian package"). And the man page and completions it ships are
//! the ones this build prints.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

use crate::support::{bin, output, text};

/// The package's files and directories with the owner, group and mode each must have, written
/// by hand (everything else it installs is root:root, 0644 for a file and 0755 for a
/// directory).
const EXPECTED: &[(&str, &str, &str, u32)] = &[
    ("/usr/bin/payrecon", "root", "root", 0o755),
    ("/etc/payrecon", "root", "payrecon", 0o750),
    ("/etc/payrecon/payrecon.toml", "root", "payrecon", 0o640),
    ("/etc/payrecon/env", "root", "payrecon", 0o640),
    (
        "/usr/lib/systemd/system/payrecon.service",
        "root",
        "root",
        0o644,
    ),
    (
        "/usr/lib/systemd/system/payrecon-backup.service",
        "root",
        "root",
        0o644,
    ),
    (
        "/usr/lib/systemd/system/payrecon-backup.timer",
        "root",
        "root",
        0o644,
    ),
    ("/usr/lib/sysusers.d/payrecon.conf", "root", "root", 0o644),
    ("/usr/lib/tmpfiles.d/payrecon.conf", "root", "root", 0o644),
    ("/usr/share/man/man1/payrecon.1.gz", "root", "root", 0o644),
    (
        "/usr/share/bash-completion/completions/payrecon",
        "root",
        "root",
        0o644,
    ),
    (
        "/usr/share/zsh/vendor-completions/_payrecon",
        "root",
        "root",
        0o644,
    ),
    (
        "/usr/share/fish/vendor_completions.d/payrecon.fish",
        "root",
        "root",
        0o644,
    ),
    ("/usr/share/doc/payrecon/README.md", "root", "root", 0o644),
];

/// Not installed by the package but made by its postinst (systemd-tmpfiles).
const MADE: &[(&str, &str, &str, u32)] = &[
    ("/var/lib/payrecon", "payrecon", "payrecon", 0o700),
    ("/var/lib/payrecon/backups", "payrecon", "payrecon", 0o700),
];

fn run(program: &str, args: &[&str]) -> (bool, String) {
    let o = Command::new(program).args(args).output().unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (o.status.success(), all)
}

fn must(program: &str, args: &[&str]) -> String {
    let (ok, out) = run(program, args);
    assert!(ok, "{program} {args:?}: {out}");
    out
}

fn name_of(db: &str, id: u32) -> String {
    let out = must("getent", &[db, &id.to_string()]);
    out.split(':').next().unwrap().to_string()
}

fn owner_mode(path: &str) -> (String, String, u32) {
    let m = std::fs::metadata(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    (
        name_of("passwd", m.uid()),
        name_of("group", m.gid()),
        m.permissions().mode() & 0o7777,
    )
}

/// As the payrecon user, with the secrets of /etc/payrecon/env as the service gets them.
fn as_payrecon(command: &str) -> (bool, String) {
    run(
        "runuser",
        &[
            "-u",
            "payrecon",
            "--",
            "sh",
            "-c",
            &format!("cd / && set -a && . /etc/payrecon/env && set +a && {command}"),
        ],
    )
}

/// Removes what the test installed, also when it fails.
struct Uninstall;

impl Drop for Uninstall {
    fn drop(&mut self) {
        let _ = run("dpkg", &["--purge", "payrecon"]);
        let _ = std::fs::remove_dir_all("/var/lib/payrecon");
        let _ = std::fs::remove_dir_all("/etc/payrecon");
        let _ = run("userdel", &["payrecon"]);
        let _ = run("groupdel", &["payrecon"]);
    }
}

#[test]
#[ignore = "installs the Debian package on this machine: needs root and PAYRECON_DEB naming the .deb (`.ci/run` builds it with cargo deb and runs this)"]
fn the_debian_package_installs_runs_as_its_user_and_removes_keeping_the_ledger() {
    let deb = std::env::var("PAYRECON_DEB").expect("PAYRECON_DEB names the .deb to install");
    assert!(Path::new(&deb).is_file(), "{deb}");
    assert_eq!(must("id", &["-u"]).trim(), "0", "dpkg -i needs root");
    assert!(
        !Path::new("/var/lib/payrecon/ledger.db").exists() && !run("dpkg", &["-s", "payrecon"]).0,
        "payrecon is installed here already: this test would remove it"
    );
    let _cleanup = Uninstall;

    let out = must("dpkg", &["-i", &deb]);
    assert!(out.contains("installed, not enabled"), "{out}");
    // Every file dpkg installed, and the directories the postinst made.
    let listed = must("dpkg", &["-L", "payrecon"]);
    let mut checked = 0;
    for path in listed.lines().filter(|p| p.starts_with('/') && *p != "/.") {
        let want = EXPECTED.iter().find(|e| e.0 == path);
        let (user, group, mode) = owner_mode(path);
        let is_dir = Path::new(path).is_dir();
        let (wu, wg, wm) = match want {
            Some(&(_, u, g, m)) => (u, g, m),
            None if is_dir => ("root", "root", 0o755),
            None => ("root", "root", 0o644),
        };
        assert_eq!(
            (user.as_str(), group.as_str(), mode),
            (wu, wg, wm),
            "{path}: {user}:{group} {mode:o}"
        );
        checked += 1;
    }
    for &(path, u, g, m) in EXPECTED.iter().chain(MADE) {
        let (user, group, mode) = owner_mode(path);
        assert_eq!(
            (user.as_str(), group.as_str(), mode),
            (u, g, m),
            "{path}: {user}:{group} {mode:o}"
        );
    }
    assert!(checked > 20, "{listed}");
    let conffiles = must("dpkg-query", &["-W", "-f=${Conffiles}", "payrecon"]);
    for c in ["/etc/payrecon/payrecon.toml", "/etc/payrecon/env"] {
        assert!(conffiles.contains(c), "{c} is not a conffile: {conffiles}");
    }
    // Disabled until configured: no unit is wanted by any target.
    for wants in [
        "/etc/systemd/system/multi-user.target.wants/payrecon.service",
        "/etc/systemd/system/timers.target.wants/payrecon-backup.timer",
    ] {
        assert!(
            !Path::new(wants).exists(),
            "{wants} exists: enabled on install"
        );
    }
    // The installed units verify against the installed binary.
    must(
        "systemd-analyze",
        &[
            "verify",
            "/usr/lib/systemd/system/payrecon.service",
            "/usr/lib/systemd/system/payrecon-backup.service",
            "/usr/lib/systemd/system/payrecon-backup.timer",
        ],
    );

    // As the payrecon user: the config is readable, and the secret it names is missing until
    // the operator writes it.
    let (ok, out) = as_payrecon("payrecon check-config");
    assert!(!ok, "{out}");
    assert!(out.contains("MOPAY_API_KEY is not set"), "{out}");
    assert!(!out.contains("ermission denied"), "{out}");
    let mut env = std::fs::read_to_string("/etc/payrecon/env").unwrap();
    env.push_str("MOPAY_API_KEY=sk_test_package\n");
    std::fs::write("/etc/payrecon/env", env).unwrap();
    let (ok, out) = as_payrecon("payrecon check-config");
    assert!(ok && out.contains("config OK"), "{out}");
    let (ok, out) = as_payrecon(
        "payrecon add --provider mopay --session-id PKG_1 --amount 12.50 --currency LSL",
    );
    assert!(ok, "{out}");
    let (user, _, _) = owner_mode("/var/lib/payrecon/ledger.db");
    assert_eq!(user, "payrecon");
    let (ok, out) = as_payrecon("payrecon ledger backup /var/lib/payrecon/backups/ledger-test.db");
    assert!(ok && out.contains("integrity_check ok"), "{out}");
    assert_eq!(
        owner_mode("/var/lib/payrecon/backups/ledger-test.db"),
        ("payrecon".into(), "payrecon".into(), 0o600)
    );

    // Removed: the binary goes, the config (with its edit) and the ledger stay.
    let mut config = std::fs::read_to_string("/etc/payrecon/payrecon.toml").unwrap();
    config.push_str("\n# edited by the operator\n");
    std::fs::write("/etc/payrecon/payrecon.toml", &config).unwrap();
    must("dpkg", &["-r", "payrecon"]);
    assert!(!Path::new("/usr/bin/payrecon").exists());
    assert_eq!(
        std::fs::read_to_string("/etc/payrecon/payrecon.toml").unwrap(),
        config
    );
    assert!(Path::new("/etc/payrecon/env").exists());
    assert!(Path::new("/var/lib/payrecon/ledger.db").exists());
    // Installed again: the edited config is kept, the ledger reads as before.
    must("dpkg", &["-i", &deb]);
    assert_eq!(
        std::fs::read_to_string("/etc/payrecon/payrecon.toml").unwrap(),
        config
    );
    assert_eq!(
        owner_mode("/etc/payrecon/payrecon.toml"),
        ("root".into(), "payrecon".into(), 0o640)
    );
    let (ok, out) = as_payrecon("payrecon list");
    assert!(ok && out.contains("PKG_1"), "{out}");
    // Purged: the config goes, the ledger and its backups stay (they are the record of money).
    must("dpkg", &["--purge", "payrecon"]);
    assert!(!Path::new("/etc/payrecon/payrecon.toml").exists());
    assert!(!Path::new("/etc/payrecon/env").exists());
    assert!(Path::new("/var/lib/payrecon/ledger.db").exists());
    assert!(Path::new("/var/lib/payrecon/backups/ledger-test.db").exists());
}

/// The man page and completions the package ships (`packaging/`) are what this build prints:
/// regenerate them with `payrecon man > packaging/payrecon.1` and `payrecon completions
/// bash|zsh|fish > packaging/completions/…` when the commands change.
#[tokio::test]
async fn the_packaged_man_page_and_completions_are_this_build_s() {
    let root = env!("CARGO_MANIFEST_DIR");
    for (args, file) in [
        (&["man"][..], "packaging/payrecon.1"),
        (
            &["completions", "bash"],
            "packaging/completions/payrecon.bash",
        ),
        (&["completions", "zsh"], "packaging/completions/_payrecon"),
        (
            &["completions", "fish"],
            "packaging/completions/payrecon.fish",
        ),
    ] {
        let mut c = bin();
        c.args(args);
        let o = output(c).await;
        let (out, err) = text(&o);
        assert!(o.status.success(), "{err}");
        let shipped = std::fs::read_to_string(Path::new(root).join(file)).unwrap();
        assert!(
            shipped == out,
            "{file} is not what `payrecon {}` prints now: regenerate it",
            args.join(" ")
        );
    }
}
