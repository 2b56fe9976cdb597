//! The SDK and `cairn sync` against a server with auth on, with keys made by the shell commands.

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cairn_client::http::ApiClient;
use cairn_client::{ErrorKind, Mode, Settings};

use crate::{CAIRN, ServerProcess, cairn, run_dir};

fn ok(out: std::process::Output) -> String {
    assert!(out.status.success(), "{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `cairn keys create`, which prints the key alone on its last line.
fn new_key(data: &str, user: &str) -> String {
    let out = ok(cairn(&["keys", "create", "--user", user, "--name", "test", "--data-dir", data]));
    out.lines().last().unwrap().trim().to_owned()
}

#[test]
fn the_sdk_and_sync_with_keys() {
    let data = tempfile::tempdir().unwrap();
    let d = data.path().to_str().unwrap();
    // Shell administration, before and while the server runs.
    let mut create = Command::new(CAIRN).args(["users", "create", "ana", "--password-stdin", "--data-dir", d]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    create.stdin.take().unwrap().write_all(b"correct horse\n").unwrap();
    assert!(create.wait_with_output().unwrap().status.success());
    let server = ServerProcess::start(data.path(), &["--auth", "on"]);
    ok(cairn(&["teams", "create", "lab", "--data-dir", d]));
    ok(cairn(&["teams", "add-member", "lab", "ana", "--role", "member", "--data-dir", d]));
    let key = new_key(d, "ana");
    assert!(key.starts_with("cairn-") && key.len() == 46, "{key}");
    let listed = ok(cairn(&["keys", "list", "--user", "ana", "--data-dir", d]));
    assert!(listed.contains(&key[..12]) && !listed.contains(&key), "{listed}");

    // A run with the key: logged and read back.
    let work = tempfile::tempdir().unwrap();
    let settings = || Settings::new().base_url(server.url.clone()).entity("lab").project("keys").dir(work.path()).silent(true);
    let run = cairn_client::init(settings().api_key(key.clone()).run_id("online")).unwrap();
    for step in 0..20 {
        run.log([("loss", cairn_client::Value::Float(1.0 / (step + 1) as f64))]).unwrap();
    }
    run.finish(None).unwrap();
    let api = ApiClient::new(&server.url, Some(key.clone()), Duration::from_secs(30));
    let info = api.get_run(&cairn_types::RunPath::new("lab", "keys", "online")).unwrap();
    assert_eq!(info.last_step, Some(19));
    // Without a key, or with a bad one: init fails at once, with the typed error; no offline loop.
    for bad in [None, Some("cairn_this-is-not-a-key-of-this-server-at-all".to_owned())] {
        let started = Instant::now();
        let settings = match &bad {
            Some(k) => settings().api_key(k.clone()),
            None => settings(),
        };
        let err = cairn_client::init(settings.run_id("refused")).err().expect("refused");
        assert_eq!(err.kind, ErrorKind::Unauthorized, "{bad:?}: {err:?}");
        assert!(err.message.contains("API key") || err.message.contains("credentials"), "{}", err.message);
        assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    }
    // A team the user is not in: 403, typed, naming the entity.
    let err = cairn_client::init(Settings::new().base_url(server.url.clone()).entity("elsewhere").project("p").dir(work.path()).silent(true).api_key(key.clone())).err().unwrap();
    assert_eq!(err.kind, ErrorKind::Forbidden, "{err:?}");
    assert!(err.message.contains("elsewhere"), "{}", err.message);

    // An offline run synced with the key.
    let offline = tempfile::tempdir().unwrap();
    let log_offline = |run_id: &str| {
        let run = cairn_client::init(settings().dir(offline.path().join(run_id)).mode(Mode::Offline).run_id(run_id)).unwrap();
        for step in 0..10 {
            run.log([("acc", cairn_client::Value::Int(step))]).unwrap();
        }
        run.finish(None).unwrap();
        run_dir(&offline.path().join(run_id))
    };
    let dir = log_offline("offline1");
    let synced = Command::new(CAIRN).args(["sync", "--base-url", &server.url]).arg(&dir).env("CAIRN_API_KEY", &key).output().unwrap();
    ok(synced);
    assert_eq!(api.get_run(&cairn_types::RunPath::new("lab", "keys", "offline1")).unwrap().last_step, Some(9));

    // A revoked key: refused within a second; sync stops with a clear error and keeps the data,
    // which a new key then uploads.
    let dir = log_offline("offline2");
    ok(cairn(&["keys", "revoke", &key, "--data-dir", d]));
    std::thread::sleep(Duration::from_millis(1100));
    let refused = Command::new(CAIRN).args(["sync", "--base-url", &server.url]).arg(&dir).env("CAIRN_API_KEY", &key).output().unwrap();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("API key is not valid"), "{stderr}");
    assert!(dir.exists());
    let fresh = new_key(d, "ana");
    // `cairn login` checks the key and saves it for the server, readable by this user only.
    let config = tempfile::tempdir().unwrap();
    let login = Command::new(CAIRN).args(["login", &fresh, "--host", &server.url]).env("CAIRN_CONFIG_DIR", config.path()).output().unwrap();
    ok(login);
    let saved = cairn_client::credentials::key_file(&server.url).map(|p| p.file_name().unwrap().to_owned()).unwrap();
    let file = config.path().join("keys").join(saved);
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    let synced = Command::new(CAIRN).args(["sync", "--base-url", &server.url]).arg(&dir).env("CAIRN_CONFIG_DIR", config.path()).env_remove("CAIRN_API_KEY").output().unwrap();
    ok(synced);
    let api = ApiClient::new(&server.url, Some(fresh), Duration::from_secs(30));
    assert_eq!(api.get_run(&cairn_types::RunPath::new("lab", "keys", "offline2")).unwrap().last_step, Some(9));
    let bad_login = Command::new(CAIRN).args(["login", &key, "--host", &server.url]).env("CAIRN_CONFIG_DIR", config.path()).output().unwrap();
    assert!(!bad_login.status.success());

    // The audit log has the shell's changes.
    let audit = ok(cairn(&["audit", "--data-dir", d]));
    for action in ["user.create", "team.create", "member.role", "key.create", "key.revoke"] {
        assert!(audit.contains(action), "{action}: {audit}");
    }
}
