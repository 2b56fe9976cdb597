use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use cairn_client::http::ApiClient;
use cairn_types::RunPath;
use cairn_types::api::RunState;
use cairn_types::wire::ColumnValues;

use crate::children::value_at;
use crate::{Guard, ServerProcess, cairn, child, run_dir, wait_until};

/// Waits for the child's `ready <run path>` line.
fn ready_line(process: &mut Guard) -> String {
    let lines = BufReader::new(process.stdout.take().unwrap()).lines();
    for line in lines {
        let line = line.unwrap();
        if let Some(path) = line.strip_prefix("ready ") {
            return path.to_owned();
        }
    }
    panic!("the child ended before it was ready");
}

/// Reads every point of `key` back: `(steps, values)`.
fn read_back(api: &ApiClient, path: &RunPath, key: &str) -> (Vec<i64>, Vec<Option<f64>>) {
    let columns = api.history_columns(path, Some(&[key.to_owned()]), None, None, 10_000_000, false).unwrap();
    let values = match &columns.columns[0].data {
        ColumnValues::Floats(values, present) => values.iter().zip(present).map(|(v, p)| p.then_some(*v)).collect(),
        ColumnValues::Values(values) => values.iter().map(|v| v.as_ref().and_then(|v| v.as_f64())).collect(),
    };
    (columns.steps, values)
}

/// Checks that steps 0..=last_logged are all there once, with the values logged.
fn assert_exactly_once(api: &ApiClient, path: &RunPath, last_logged: i64) -> usize {
    let (steps, values) = read_back(api, path, "loss");
    assert!(steps.windows(2).all(|w| w[1] == w[0] + 1), "steps have a gap or a duplicate");
    assert_eq!(steps.first(), Some(&0));
    let last = *steps.last().unwrap();
    assert!(last >= last_logged, "step {last_logged} was logged but the server has only up to {last}");
    for (step, value) in steps.iter().zip(&values) {
        if *step <= last_logged {
            assert_eq!(*value, Some(value_at(*step)), "step {step}");
        }
    }
    let (sparse_steps, _) = read_back(api, path, "sparse");
    let expected: Vec<i64> = (0..=last_logged).filter(|s| s % 7 == 3).collect();
    assert_eq!(&sparse_steps[..expected.len()], &expected[..]);
    steps.len()
}

/// The history rows stored: the loss steps, and one more when a kill came between the two
/// records of an amended row, leaving that row with only its first key (`sparse`), which is
/// stored as it was logged.
fn history_rows(api: &ApiClient, path: &RunPath) -> usize {
    let (steps, _) = read_back(api, path, "loss");
    let (sparse_steps, _) = read_back(api, path, "sparse");
    steps.len() + usize::from(sparse_steps.last().is_some_and(|s| Some(s) > steps.last()))
}

fn kill_mid_run(extra_env: &[(&str, String)], server: &ServerProcess, work: &std::path::Path) -> (RunPath, i64, std::path::PathBuf) {
    let mut envs = vec![("CAIRN_BASE_URL", server.url.clone()), ("CAIRN_DIR", work.display().to_string()), ("CAIRN_ENTITY", "tester".to_owned())];
    envs.extend(extra_env.iter().cloned());
    let mut process = Guard(child("log-forever", &envs).stdout(Stdio::piped()).spawn().unwrap());
    let mut lines = BufReader::new(process.stdout.take().unwrap()).lines();
    let mut run_id = String::new();
    let mut last_logged = -1;
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(id) = line.strip_prefix("id ") {
            run_id = id.to_owned();
        }
        if let Some(step) = line.strip_prefix("logged ") {
            last_logged = step.parse().unwrap();
            if last_logged >= 30_000 {
                break;
            }
        }
    }
    // SIGKILL in the middle of logging: no atexit, no finish, no flush.
    process.kill().unwrap();
    process.wait().unwrap();
    // Lines printed before the kill that we did not read yet count as logged too.
    for line in lines.map_while(Result::ok) {
        if let Some(step) = line.strip_prefix("logged ") {
            last_logged = step.parse().unwrap();
        }
    }
    (RunPath::new("tester", "e2e", run_id), last_logged, run_dir(work))
}

#[test]
fn sigkill_then_sync_uploads_everything_exactly_once() {
    let data = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(data.path(), &[]);
    let api = server.api();
    let (path, last_logged, dir) = kill_mid_run(&[], &server, work.path());
    assert!(last_logged >= 30_000);

    let sync = cairn(&["sync", dir.to_str().unwrap(), "--base-url", &server.url]);
    assert!(sync.status.success(), "{}", String::from_utf8_lossy(&sync.stderr));
    let stdout = String::from_utf8_lossy(&sync.stdout);
    assert!(stdout.contains(&path.to_string()), "{stdout}");
    let count = assert_exactly_once(&api, &path, last_logged);

    // Syncing again changes nothing.
    let again = cairn(&["sync", dir.to_str().unwrap(), "--base-url", &server.url]);
    assert!(again.status.success());
    assert_eq!(assert_exactly_once(&api, &path, last_logged), count);
    let run = api.get_run(&path).unwrap();
    assert_eq!(run.offsets.history as usize, history_rows(&api, &path));
    assert!(history_rows(&api, &path) - count <= 1);
    assert_eq!(run.config["role"], cairn_types::Value::from("log-forever"));
}

#[test]
fn offline_run_killed_then_synced() {
    let data = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(data.path(), &[]);
    let (path, last_logged, dir) = kill_mid_run(&[("CAIRN_MODE", "offline".into())], &server, work.path());
    // Nothing reached the server while offline.
    assert!(server.api().get_run(&path).is_err());
    let sync = cairn(&["sync", dir.to_str().unwrap(), "--base-url", &server.url]);
    assert!(sync.status.success(), "{}", String::from_utf8_lossy(&sync.stderr));
    assert_exactly_once(&server.api(), &path, last_logged);
}

/// Copies a run directory (its log and files) to `to`.
fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

#[test]
fn a_damaged_log_syncs_every_whole_record_before_the_damage_and_says_where() {
    let data = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(data.path(), &[]);
    let (path, last_logged, dir) = kill_mid_run(&[("CAIRN_MODE", "offline".into())], &server, work.path());
    let segment = dir.join("wal").join("00000000.seg");
    let used = {
        let bytes = std::fs::read(&segment).unwrap();
        bytes.iter().rposition(|&b| b != 0).unwrap() + 1
    };
    // The record that holds the log's middle byte: the damage goes inside it, never on a boundary
    // between two records (a log cut there ends cleanly, with no damage to report).
    let (start, len) = {
        let mut found = None;
        cairn_client::wal::WalReader::new(&dir.join("wal"))
            .scan(0, u64::MAX, |pos, frame, _| {
                let (_, offset) = cairn_client::wal::split_position(pos);
                found = Some((offset, frame.len()));
                offset + frame.len() <= used / 2
            })
            .unwrap();
        found.unwrap()
    };
    assert!(len > 2 && start + len <= used, "record at {start}, {len} bytes, of {used}");
    let middle = start + len / 2;
    // Two copies: one cut short in the middle of that record, one with a bit flipped there.
    let (cut, flipped) = (work.path().join("cut"), work.path().join("flipped"));
    copy_dir(&dir, &cut);
    copy_dir(&dir, &flipped);
    let f = std::fs::OpenOptions::new().write(true).open(cut.join("wal").join("00000000.seg")).unwrap();
    f.set_len(middle as u64).unwrap();
    drop(f);
    let flipped_seg = flipped.join("wal").join("00000000.seg");
    let mut bytes = std::fs::read(&flipped_seg).unwrap();
    bytes[middle] ^= 0x04;
    std::fs::write(&flipped_seg, &bytes).unwrap();

    let mut stored = Vec::new();
    for (copy, data) in [(&cut, tempfile::tempdir().unwrap()), (&flipped, tempfile::tempdir().unwrap())] {
        // A server of its own for each copy: both are the same run.
        let server = ServerProcess::start(data.path(), &[]);
        let sync = cairn(&["sync", copy.to_str().unwrap(), "--base-url", &server.url]);
        let stderr = String::from_utf8_lossy(&sync.stderr);
        assert!(sync.status.success(), "{stderr}");
        assert!(stderr.contains("the log is damaged at wal/00000000.seg, byte ") && stderr.contains("every whole record before it was synced"), "{stderr}");
        // Steps from 0, each once, each with the value logged: no garbage, no gap.
        let (steps, values) = read_back(&server.api(), &path, "loss");
        assert!(!steps.is_empty(), "nothing before the damage was synced");
        assert_eq!(steps[0], 0);
        assert!(steps.windows(2).all(|w| w[1] == w[0] + 1), "steps have a gap or a duplicate");
        for (step, value) in steps.iter().zip(&values) {
            assert_eq!(*value, Some(value_at(*step)), "step {step}");
        }
        let last = *steps.last().unwrap();
        assert!(last < last_logged, "the damage in the middle of the log let everything through ({last} of {last_logged})");
        stored.push(last);
    }
    // The damage was at the same place in both: about as much got through.
    assert!(stored[0].abs_diff(stored[1]) <= 100, "{stored:?}");
}

#[test]
fn sync_refuses_a_directory_in_use_and_a_non_run_directory() {
    let work = tempfile::tempdir().unwrap();
    let out = cairn(&["sync", work.path().to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a cairn run directory"));
}

#[test]
fn graceful_shutdown_and_restart_keep_the_data() {
    let data = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let mut server = ServerProcess::start(data.path(), &[]);
    let envs = [("CAIRN_BASE_URL", server.url.clone()), ("CAIRN_DIR", work.path().display().to_string()), ("CAIRN_ENTITY", "tester".to_owned())];
    let mut process = Guard(child("log-then-sleep", &envs).stdout(Stdio::piped()).spawn().unwrap());
    let path = RunPath::parse(&ready_line(&mut process)).unwrap();
    process.kill().unwrap();
    process.wait().unwrap();
    server.signal(libc::SIGINT);
    let status = server.child.wait().unwrap();
    assert!(status.success(), "{status}");
    let server = ServerProcess::start(data.path(), &[]);
    let run = server.api().get_run(&path).unwrap();
    assert_eq!(run.summary["loss"], cairn_types::Value::Float(1.0));
}

#[test]
fn a_silent_client_is_marked_crashed_and_recovers_when_it_speaks() {
    let data = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(data.path(), &["--heartbeat-timeout-secs", "1", "--monitor-interval-secs", "0.2"]);
    let envs = [("CAIRN_BASE_URL", server.url.clone()), ("CAIRN_DIR", work.path().display().to_string()), ("CAIRN_HEARTBEAT_SECS", "0.2".to_owned())];
    let mut process = Guard(child("log-then-sleep", &envs).stdout(Stdio::piped()).spawn().unwrap());
    let path = RunPath::parse(&ready_line(&mut process)).unwrap();
    let api = server.api();
    // While it sends heartbeats it stays running.
    std::thread::sleep(Duration::from_millis(1800));
    assert_eq!(api.get_run(&path).unwrap().state, RunState::Running);
    process.kill().unwrap();
    process.wait().unwrap();
    wait_until("the run to be marked crashed", Duration::from_secs(10), || api.get_run(&path).unwrap().state == RunState::Crashed);
    // A crashed run that speaks again is running again.
    api.heartbeat(&path).unwrap();
    assert_eq!(api.get_run(&path).unwrap().state, RunState::Running);
}

#[test]
fn stop_from_the_server_ends_the_run_as_killed() {
    let data = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(data.path(), &[]);
    let envs = [("CAIRN_BASE_URL", server.url.clone()), ("CAIRN_DIR", work.path().display().to_string()), ("CAIRN_HEARTBEAT_SECS", "0.2".to_owned())];
    let mut process = Guard(child("wait-for-stop", &envs).stdout(Stdio::piped()).spawn().unwrap());
    let mut lines = BufReader::new(process.stdout.take().unwrap()).lines();
    let path = lines.by_ref().find_map(|l| l.ok().and_then(|l| l.strip_prefix("ready ").map(str::to_owned))).unwrap();
    let out = cairn(&["runs", "stop", &path, "--base-url", &server.url]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let ended = lines.find_map(|l| l.ok().and_then(|l| l.strip_prefix("ended ").map(str::to_owned))).unwrap();
    assert_eq!(ended, "killed");
    assert!(process.wait().unwrap().success());
    let run = server.api().get_run(&RunPath::parse(&path).unwrap()).unwrap();
    assert_eq!(run.state, RunState::Killed);
}

/// A TCP proxy in front of `upstream` that counts the ingest requests passing through it.
fn counting_proxy(upstream: String) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::{Read, Write};
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let count = std::sync::Arc::new(AtomicUsize::new(0));
    let counted = count.clone();
    let upstream = upstream.trim_start_matches("http://").to_owned();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let server = std::net::TcpStream::connect(&upstream).unwrap();
            let (mut from_client, mut to_server) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            let (mut from_server, mut to_client) = (server, client);
            let counted = counted.clone();
            std::thread::spawn(move || {
                // The request line may straddle two reads: keep the tail of the last one.
                let marker = b"/ingest HTTP/1.1";
                let mut window: Vec<u8> = Vec::new();
                let mut buf = [0u8; 64 << 10];
                while let Ok(n @ 1..) = from_client.read(&mut buf) {
                    window.extend_from_slice(&buf[..n]);
                    counted.fetch_add(window.windows(marker.len()).filter(|w| w == marker).count(), Ordering::Relaxed);
                    window.drain(..window.len().saturating_sub(marker.len() - 1));
                    if to_server.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                let _ = to_server.shutdown(std::net::Shutdown::Write);
            });
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut from_server, &mut to_client);
                let _ = to_client.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    (url, count)
}

#[test]
fn a_program_that_logs_all_the_time_is_uploaded_in_a_few_batches_not_one_per_step() {
    let data = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(data.path(), &[]);
    let (url, ingests) = counting_proxy(server.url.clone());
    let envs = [("CAIRN_BASE_URL", url), ("CAIRN_DIR", work.path().display().to_string())];
    let out = child("log-two-seconds", &envs).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line: Vec<&str> = stdout.lines().find_map(|l| l.strip_prefix("logged ")).unwrap().split(' ').collect();
    let (steps, path) = (line[0].parse::<i64>().unwrap(), RunPath::parse(line[1]).unwrap());
    assert_eq!(line[2], "uploaded=true", "{stdout}");
    assert!(steps > 200, "{stdout}");
    // A step a millisecond for two seconds: the uploader pauses after each batch that took all
    // there was, so a handful of batches carry it (the pause is 500 ms), not one per step.
    let batches = ingests.load(std::sync::atomic::Ordering::Relaxed);
    assert!((1..=10).contains(&batches), "{batches} ingest requests for {steps} steps");
    let (stored, values) = read_back(&server.api(), &path, "loss");
    assert_eq!(stored, (0..steps).collect::<Vec<i64>>());
    assert!(values.iter().enumerate().all(|(i, v)| *v == Some(value_at(i as i64))));
}

#[test]
fn finish_does_not_hang_when_the_server_is_gone_and_sync_catches_up() {
    let work = tempfile::tempdir().unwrap();
    // A port nobody listens on.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);
    let envs = [("CAIRN_BASE_URL", dead_url), ("CAIRN_DIR", work.path().display().to_string())];
    let started = Instant::now();
    let out = child("unreachable", &envs).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let took: u64 = stdout.lines().find_map(|l| l.strip_prefix("finish took ")).unwrap().split(' ').next().unwrap().parse().unwrap();
    assert!(took < 5_000, "finish took {took} ms");
    assert!(started.elapsed() < Duration::from_secs(30));
    assert!(stdout.contains("uploaded=false"), "{stdout}");
    assert!(stdout.contains("cairn sync"), "{stdout}");

    let data = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(data.path(), &[]);
    let dir = run_dir(work.path());
    let sync = cairn(&["sync", dir.to_str().unwrap(), "--base-url", &server.url]);
    assert!(sync.status.success(), "{}", String::from_utf8_lossy(&sync.stderr));
    let projects = server.api().list_projects(&server.api().info().unwrap().default_entity).unwrap();
    assert_eq!(projects[0].name, "e2e");
    let page = server.api().search_runs(&projects[0].entity, "e2e", &Default::default()).unwrap();
    let run = &page.runs[0];
    assert_eq!(run.state, RunState::Finished);
    let (steps, values) = read_back(&server.api(), &run.path(), "loss");
    assert_eq!(steps, (0..500).collect::<Vec<i64>>());
    assert_eq!(values[499], Some(value_at(499)));
}

#[test]
fn finish_does_not_hang_on_a_server_that_never_answers() {
    let work = tempfile::tempdir().unwrap();
    let hung = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", hung.local_addr().unwrap());
    // Accept connections and hold them open without a word.
    let held = std::thread::spawn(move || {
        let mut open = Vec::new();
        for stream in hung.incoming().take(64).flatten() {
            open.push(stream);
        }
    });
    let envs = [("CAIRN_BASE_URL", url), ("CAIRN_DIR", work.path().display().to_string()), ("CAIRN_INIT_TIMEOUT_SECS", "1".to_owned())];
    let out = child("hung", &envs).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let millis = |prefix: &str| -> u64 { stdout.lines().find_map(|l| l.strip_prefix(prefix)).unwrap().split(' ').next().unwrap().parse().unwrap() };
    assert!(millis("init took ") < 3_000, "{stdout}");
    assert!(millis("finish took ") < 4_000, "{stdout}");
    assert!(stdout.contains("uploaded=false"), "{stdout}");
    drop(held);
}

#[test]
fn runs_list_and_show_print_tables() {
    let data = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(data.path(), &["--default-entity", "nico"]);
    let envs = [("CAIRN_BASE_URL", server.url.clone()), ("CAIRN_DIR", work.path().display().to_string())];
    let mut process = Guard(child("log-then-sleep", &envs).stdout(Stdio::piped()).spawn().unwrap());
    let path = ready_line(&mut process);
    assert!(path.starts_with("nico/e2e/"), "{path}");
    process.kill().unwrap();
    process.wait().unwrap();

    let list = cairn(&["runs", "list", "nico/e2e", "--base-url", &server.url]);
    let text = String::from_utf8_lossy(&list.stdout);
    assert!(list.status.success(), "{}", String::from_utf8_lossy(&list.stderr));
    assert!(text.starts_with("ID"), "{text}");
    assert!(text.contains("running") && text.contains("loss") && text.contains("1 of 1 runs"), "{text}");
    let show = cairn(&["runs", "show", &path, "--base-url", &server.url]);
    let text = String::from_utf8_lossy(&show.stdout);
    assert!(text.contains("summary:") && text.contains("loss: 1") && text.contains("role: log-then-sleep"), "{text}");
    let json = cairn(&["runs", "show", &path, "--json", "--base-url", &server.url]);
    let value: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(value["state"], "running");

    let bad = cairn(&["runs", "show", "nico/e2e", "--base-url", &server.url]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("entity/project/run_id"));
    let missing = cairn(&["runs", "show", "nico/e2e/nope", "--base-url", &server.url]);
    assert!(String::from_utf8_lossy(&missing.stderr).contains("not found"));
    let bad_filter = cairn(&["runs", "list", "nico/e2e", "--filter", "{x", "--base-url", &server.url]);
    assert!(String::from_utf8_lossy(&bad_filter.stderr).contains("not valid JSON"));
}

#[test]
fn help_everywhere() {
    for args in [
        &["--help"][..],
        &["server", "--help"],
        &["sync", "--help"],
        &["migrate", "--help"],
        &["users", "--help"],
        &["teams", "--help"],
        &["artifact", "put", "--help"],
        &["keys", "create", "--help"],
        &["runs", "--help"],
        &["runs", "list", "--help"],
        &["runs", "show", "--help"],
        &["runs", "stop", "--help"],
    ] {
        let out = cairn(args);
        assert!(out.status.success(), "{args:?}");
        assert!(String::from_utf8_lossy(&out.stdout).contains("Usage: cairn"), "{args:?}");
    }
}

#[test]
fn a_server_on_the_network_needs_auth_and_prints_its_setup_link() {
    let data = tempfile::tempdir().unwrap();
    let mut child =
        std::process::Command::new(crate::CAIRN).args(["server", "--host", "0.0.0.0", "--port", "0", "--data-dir"]).arg(data.path()).stdout(Stdio::piped()).spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let text: Vec<String> = lines.by_ref().take(5).map(|l| l.unwrap()).collect();
    let link = text.iter().find_map(|l| l.split_whitespace().find(|w| w.contains("/setup?token="))).map(str::to_owned);
    let link = link.unwrap_or_else(|| panic!("no setup link in {text:?}"));
    assert!(text.iter().any(|l| l.contains("auth: on")), "{text:?}");
    // The link's token creates the first admin, once.
    let (base, token) = link.split_once("/setup?token=").unwrap();
    let body = serde_json::json!({"token": token, "username": "ana", "password": "long enough"});
    let made = ureq::post(format!("{base}/api/v1/setup")).header("Content-Type", "application/json").send(body.to_string()).unwrap();
    assert!(made.headers().get("set-cookie").unwrap().to_str().unwrap().contains("HttpOnly"));
    let anonymous = ureq::get(format!("{base}/api/v1/entities")).call().unwrap_err();
    assert!(matches!(anonymous, ureq::Error::StatusCode(401)), "{anonymous}");
    child.kill().unwrap();
    child.wait().unwrap();

    let refused = cairn(&["server", "--host", "0.0.0.0", "--auth", "off", "--port", "0", "--data-dir", data.path().to_str().unwrap()]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("--auth off is allowed only on a loopback address"), "{stderr}");
    let out = cairn(&["server", "--heartbeat-timeout-secs=-3", "--data-dir", data.path().to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("heartbeat-timeout-secs"));
}

#[test]
fn offline_resume_continues_the_log_and_sync_leaves_finished_runs_finished() {
    use cairn_client::{Mode, ResumeMode, Settings, map};
    let data = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(data.path(), &[]);
    let settings = || Settings::new().base_url(server.url.clone()).project("resume").run_id("resumed1").dir(work.path()).silent(true);
    // Two offline processes, the second resuming the first.
    let first = cairn_client::init(settings().mode(Mode::Offline).config(map! {"a" => 1})).unwrap();
    for step in 0..10 {
        first.log([("loss", value_at(step))]).unwrap();
    }
    first.finish(None).unwrap();
    let second = cairn_client::init(settings().mode(Mode::Offline).resume(ResumeMode::Allow).config(map! {"b" => 2}).notes("second")).unwrap();
    for step in 10..20 {
        assert_eq!(second.log([("loss", value_at(step))]).unwrap(), cairn_client::LogOutcome::Logged { step });
    }
    second.finish(None).unwrap();

    // A directory that continues another needs that one first: alone, it is refused, and the
    // run is not created from it.
    let dirs = cairn_client::rundir::dirs_of_run(work.path(), "resumed1");
    assert_eq!(dirs.len(), 2);
    let elsewhere = tempfile::tempdir().unwrap();
    let copy = elsewhere.path().join("cairn").join(dirs[1].file_name().unwrap());
    std::fs::create_dir_all(copy.parent().unwrap()).unwrap();
    assert!(std::process::Command::new("cp").arg("-r").arg(&dirs[1]).arg(&copy).status().unwrap().success());
    let out = cairn(&["sync", copy.to_str().unwrap(), "--base-url", &server.url]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("sync the run's earlier directories first"), "{}", String::from_utf8_lossy(&out.stderr));
    let api = server.api();
    assert!(api.list_entities().unwrap().is_empty());
    // Beside its earlier directory, syncing the later one uploads both, in order.
    let out = cairn(&["sync", dirs[1].to_str().unwrap(), "--base-url", &server.url]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let path = RunPath::new(whoami(&api), "resume", "resumed1");
    let (steps, values) = read_back(&api, &path, "loss");
    assert_eq!(steps, (0..20).collect::<Vec<_>>());
    assert_eq!(values[15], Some(value_at(15)));
    let run = api.get_run(&path).unwrap();
    assert_eq!(run.state, RunState::Finished);
    assert_eq!(run.config["a"], cairn_types::Value::from(1));
    assert_eq!(run.config["b"], cairn_types::Value::from(2));
    assert_eq!(run.notes, "second");

    // Syncing a finished run's directory again leaves it finished.
    let out = cairn(&["sync", dirs[0].to_str().unwrap(), "--base-url", &server.url]);
    assert!(out.status.success());
    assert_eq!(api.get_run(&path).unwrap().state, RunState::Finished);

    // Online, the run resumes after everything the offline processes logged.
    let third = cairn_client::init(settings().resume(ResumeMode::Must)).unwrap();
    assert_eq!(third.log([("loss", value_at(20))]).unwrap(), cairn_client::LogOutcome::Logged { step: 20 });
    third.finish(None).unwrap();
    let (steps, _) = read_back(&api, &path, "loss");
    assert_eq!(steps, (0..21).collect::<Vec<_>>());

    // Offline, "must" needs an earlier log of the run.
    let Err(err) = cairn_client::init(settings().run_id("never-seen").mode(Mode::Offline).resume(ResumeMode::Must)) else {
        panic!("an offline resume=\"must\" without an earlier log must fail");
    };
    assert_eq!(err.kind, cairn_client::ErrorKind::NotFound);
    assert!(err.message.contains("cannot be resumed offline"), "{}", err.message);
}

#[test]
fn online_resume_uploads_what_a_killed_process_left_first() {
    use cairn_client::{ResumeMode, Settings};
    let data = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(data.path(), &[]);
    let api = server.api();
    let (path, last_logged, _) = kill_mid_run(&[], &server, work.path());
    // Resuming the killed run uploads what its log holds first, then continues after it.
    let settings = Settings::new().base_url(server.url.clone()).entity("tester").project("e2e").run_id(path.run_id.clone()).dir(work.path()).silent(true);
    let run = cairn_client::init(settings.resume(ResumeMode::Must)).unwrap();
    let count = assert_exactly_once(&api, &path, last_logged);
    // History continues after the last stored step. That is the last loss step, or one more when
    // the kill came between a row's first part (`sparse`, not committed) and its second.
    let next = api.get_run(&path).unwrap().last_step.unwrap() + 1;
    assert!(next == count as i64 || next == count as i64 + 1, "next step {next} after {count} loss steps");
    assert_eq!(run.log([("loss", value_at(next))]).unwrap(), cairn_client::LogOutcome::Logged { step: next });
    run.finish(None).unwrap();
    // What the killed process logged is there once, followed by the new step and nothing else.
    let (steps, values) = read_back(&api, &path, "loss");
    assert_eq!(steps.len(), count + 1);
    assert!(steps[..count].iter().enumerate().all(|(i, s)| *s == i as i64), "the killed process's steps have a gap or a duplicate");
    assert_eq!((steps.last(), values.last()), (Some(&next), Some(&Some(value_at(next)))));
    let (sparse_steps, _) = read_back(&api, &path, "sparse");
    assert!(sparse_steps.iter().all(|s| s % 7 == 3 && *s < next));
    assert_eq!(api.get_run(&path).unwrap().state, RunState::Finished);
}

fn whoami(api: &ApiClient) -> String {
    api.list_entities().unwrap()[0].name.clone()
}

#[test]
fn lifecycle_from_rust_alerts_move_delete_and_purge() {
    let data = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(data.path(), &["--default-entity", "nico"]);
    let run = cairn_client::init(
        cairn_client::Settings::new()
            .base_url(server.url.clone())
            .project("rust-life")
            .run_id("life1")
            .dir(work.path().to_owned())
            .silent(true)
            .console(cairn_client::Console::Off)
            .stats_interval(Duration::ZERO),
    )
    .unwrap();
    run.log([("loss", 0.5)]).unwrap();
    use cairn_types::api::AlertLevel;
    assert!(run.alert("diverged", "loss went up", AlertLevel::Error, Duration::from_secs(60)).unwrap());
    assert!(!run.alert("diverged", "again", AlertLevel::Error, Duration::from_secs(60)).unwrap());
    assert!(run.alert("", "no title", AlertLevel::Info, Duration::ZERO).is_err());
    run.finish(None).unwrap();
    let api = server.api();
    let path = RunPath::new("nico", "rust-life", "life1");
    let alerts = api.list_alerts(&path).unwrap();
    assert_eq!(alerts.len(), 1);
    assert_eq!((alerts[0].title.as_str(), alerts[0].level), ("diverged", AlertLevel::Error));

    // Move to another entity, then delete, re-create (refused), purge, re-create.
    let moved = cairn(&["runs", "move", "nico/rust-life/life1", "--to", "team/kept", "--base-url", &server.url]);
    assert!(moved.status.success(), "{}", String::from_utf8_lossy(&moved.stderr));
    let target = RunPath::new("team", "kept", "life1");
    assert_eq!(api.get_run(&target).unwrap().summary["loss"], cairn_types::Value::Float(0.5));
    assert!(api.get_run(&path).is_err());
    let deleted = cairn(&["runs", "delete", "team/kept/life1", "--base-url", &server.url]);
    assert!(deleted.status.success(), "{}", String::from_utf8_lossy(&deleted.stderr));
    let again = || {
        cairn_client::init(
            cairn_client::Settings::new()
                .base_url(server.url.clone())
                .entity("team")
                .project("kept")
                .run_id("life1")
                .dir(work.path().to_owned())
                .silent(true)
                .console(cairn_client::Console::Off),
        )
    };
    let err = again().err().expect("a deleted id is refused");
    assert_eq!(err.kind, cairn_client::ErrorKind::Deleted);
    assert!(err.message.contains("deleted"), "{}", err.message);
    let purged = cairn(&["runs", "purge", "team/kept/life1", "--base-url", &server.url]);
    assert!(purged.status.success(), "{}", String::from_utf8_lossy(&purged.stderr));
    let fresh = again().unwrap();
    assert_eq!(fresh.step(), 0);
    for step in 0..10 {
        fresh.log([("loss", step as f64)]).unwrap();
    }
    fresh.finish(None).unwrap();

    // Fork and rewind from Rust.
    let settings =
        || cairn_client::Settings::new().base_url(server.url.clone()).entity("team").project("kept").dir(work.path().to_owned()).silent(true).console(cairn_client::Console::Off);
    let fork = cairn_client::init(settings().fork_from("life1?_step=4")).unwrap();
    assert_eq!(fork.step(), 5);
    fork.finish(None).unwrap();
    assert_eq!(api.list_forks(&RunPath::new("team", "kept", "life1")).unwrap(), [fork.id()]);
    let rewound = cairn_client::init(settings().resume_from("life1?_step=2")).unwrap();
    assert_eq!((rewound.id().as_str(), rewound.step()), ("life1", 3));
    rewound.finish(None).unwrap();
    let info = api.get_run(&RunPath::new("team", "kept", "life1")).unwrap();
    assert_eq!(info.summary["loss"], cairn_types::Value::Float(2.0));
    // At step 0: only the first row stays.
    let again = cairn_client::init(settings().resume_from("life1?_step=0")).unwrap();
    assert_eq!(again.step(), 1);
    again.finish(None).unwrap();
    assert_eq!(api.get_run(&RunPath::new("team", "kept", "life1")).unwrap().summary["loss"], cairn_types::Value::Float(0.0));
    let err = cairn_client::init(settings().fork_from("life1?_step=50")).err().unwrap();
    assert!(err.message.contains("beyond"), "{}", err.message);
    let err = cairn_client::init(settings().fork_from("life1?_step=1").mode(cairn_client::Mode::Offline)).err().unwrap();
    assert!(err.message.contains("online"), "{}", err.message);
}

/// The S3 API that the test script starts (`moto` in server mode), or `None` outside CI.
fn s3_endpoint() -> Option<(String, String)> {
    match std::env::var("CAIRN_TEST_S3_ENDPOINT") {
        Ok(endpoint) => Some((endpoint, std::env::var("CAIRN_TEST_S3_BUCKET").unwrap_or_else(|_| "cairn-test".into()))),
        Err(_) => {
            assert!(std::env::var_os("CI").is_none(), "CI must run the S3 cases: set CAIRN_TEST_S3_ENDPOINT");
            eprintln!("skipped: CAIRN_TEST_S3_ENDPOINT is not set");
            None
        }
    }
}

/// The AWS variables of the test S3 API.
fn s3_env(endpoint: &str) -> [(&'static str, &str); 4] {
    [("AWS_ENDPOINT_URL", endpoint), ("AWS_ACCESS_KEY_ID", "test"), ("AWS_SECRET_ACCESS_KEY", "test"), ("AWS_REGION", "us-east-1")]
}

/// A prefix in the test bucket that no other test uses.
fn fresh_prefix(what: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("{what}-{}-{nanos}", std::process::id())
}

/// Saves a 9 MiB checkpoint through `through`, downloads it from `from`, and checks that it
/// comes back with the same SHA-256, that its bytes are in the bucket, and that none of the data
/// directories holds them.
fn checkpoint_round_trip(through: &ServerProcess, from: &ServerProcess, project: &str, endpoint: &str, bucket: &str, prefix: &str, data_dirs: &[&std::path::Path]) {
    use sha2::Digest as _;
    use std::io::Read as _;
    let work = tempfile::tempdir().unwrap();
    // More than one piece of an upload and of the multipart write.
    let content: Vec<u8> = (0..9u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let want = cairn_store::blob::hex(&sha2::Sha256::digest(&content));
    std::fs::write(work.path().join("model.ckpt"), &content).unwrap();
    let run = cairn_client::init(
        cairn_client::Settings::new()
            .base_url(through.url.clone())
            .entity("nico")
            .project(project)
            .run_id("ckpt")
            .dir(work.path().to_owned())
            .silent(true)
            .console(cairn_client::Console::Off)
            .stats_interval(Duration::ZERO),
    )
    .unwrap();
    run.save(work.path().join("model.ckpt").to_str().unwrap(), Some(work.path()), cairn_client::files::Policy::Now).unwrap();
    run.finish(None).unwrap();

    // Served back whole, by its content hash.
    let mut reply = ureq::get(format!("{}/api/v1/runs/nico/{project}/ckpt/files/model.ckpt", from.url)).call().unwrap();
    let mut got = Vec::new();
    reply.body_mut().as_reader().read_to_end(&mut got).unwrap();
    assert_eq!(got.len(), content.len());
    assert_eq!(cairn_store::blob::hex(&sha2::Sha256::digest(&got)), want);
    // The bytes are in the bucket, and nowhere under the data directories.
    let bucket_store = cairn_store::blob::S3BlobStore::connect(bucket, prefix, endpoint, "test", "test").unwrap();
    assert_eq!(cairn_store::BlobStore::size(&bucket_store, &want).unwrap(), Some(content.len() as u64));
    // Asked about the chunks of a next version with this one as its base, the server cuts this
    // one (read back from the bucket) and holds every chunk of it.
    let chunks = cairn_client::chunks::chunk_file(&work.path().join("model.ckpt")).unwrap();
    assert!(chunks.len() > 10);
    let names: Vec<String> = chunks.iter().map(|c| c.sha256.clone()).collect();
    let api = cairn_client::http::ApiClient::new(&from.url, None, Duration::from_secs(30));
    assert!(!api.missing_chunks(&names, None).unwrap().is_empty());
    assert_eq!(api.missing_chunks(&names, Some(&want)).unwrap(), Vec::<String>::new());
    let mut big_local = Vec::new();
    let mut stack: Vec<std::path::PathBuf> = data_dirs.iter().map(|d| d.to_path_buf()).collect();
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let meta = entry.metadata().unwrap();
            if meta.is_dir() {
                stack.push(entry.path());
            } else if meta.len() >= 1 << 20 && !entry.file_name().to_string_lossy().starts_with("cairn.db") {
                big_local.push(entry.path());
            }
        }
    }
    assert!(big_local.is_empty(), "file contents on local disk: {big_local:?}");
}

#[test]
fn a_server_on_s3_blobs_keeps_files_in_the_bucket_and_serves_them_back() {
    let Some((endpoint, bucket)) = s3_endpoint() else { return };
    let data = tempfile::tempdir().unwrap();
    let prefix = fresh_prefix("cli");
    let blobs = format!("s3://{bucket}/{prefix}");
    let server = ServerProcess::start_with_env(data.path(), &["--default-entity", "nico", "--blobs", &blobs], &s3_env(&endpoint));
    checkpoint_round_trip(&server, &server, "s3", &endpoint, &bucket, &prefix, &[data.path()]);
}

/// Reads a `log-forever` client's lines up to its step `target`, noting its run id; returns the
/// step reached.
fn logged_until(lines: &mut impl Iterator<Item = String>, target: i64, run_id: &mut String) -> i64 {
    for line in lines {
        if let Some(id) = line.strip_prefix("id ") {
            *run_id = id.to_owned();
        }
        if let Some(step) = line.strip_prefix("logged ").and_then(|s| s.parse::<i64>().ok())
            && step >= target
        {
            return step;
        }
    }
    panic!("the client stopped logging");
}

/// Reads server-sent events from `url` on a thread; each `data:` line arrives on the channel.
fn events_of(url: String) -> std::sync::mpsc::Receiver<String> {
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let Ok(mut reply) = ureq::get(url).call() else { return };
        for line in BufReader::new(reply.body_mut().as_reader()).lines() {
            let Ok(line) = line else { return };
            if let Some(data) = line.strip_prefix("data:")
                && sender.send(data.trim().to_owned()).is_err()
            {
                return;
            }
        }
    });
    receiver
}

/// Two servers on one PostgreSQL database and one bucket behave as one: a run logged through
/// the first is live on the second; the first dies by SIGKILL mid-ingest and the client carries
/// on when it comes back; the run's batches, retried and uploaded again through the other
/// server by `cairn sync`, are stored exactly once; a file saved through one downloads from the
/// other, from the bucket.
#[test]
fn two_servers_on_postgres_and_s3_act_as_one() {
    let Some((endpoint, bucket)) = s3_endpoint() else { return };
    let Some((store, _schema)) = cairn_store::postgres::testing::fresh_schema() else { return };
    let (data_one, data_two, work) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let prefix = fresh_prefix("two");
    let blobs = format!("s3://{bucket}/{prefix}");
    let args = ["--default-entity", "nico", "--store", &store, "--blobs", &blobs];
    let env = s3_env(&endpoint);
    let one = ServerProcess::start_with_env(data_one.path(), &args, &env);
    let two = ServerProcess::start_with_env(data_two.path(), &args, &env);
    let events = events_of(format!("{}/api/v1/events?project=e2e", two.url));

    let envs = [("CAIRN_BASE_URL", one.url.clone()), ("CAIRN_DIR", work.path().display().to_string()), ("CAIRN_ENTITY", "tester".to_owned())];
    let mut process = Guard(child("log-forever", &envs).stdout(Stdio::piped()).spawn().unwrap());
    let mut lines = BufReader::new(process.stdout.take().unwrap()).lines().map_while(Result::ok);
    let mut run_id = String::new();
    logged_until(&mut lines, 10_000, &mut run_id);
    let path = RunPath::new("tester", "e2e", &run_id);
    // Live on the other server: its event stream names the run's new history.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let event = events.recv_timeout(deadline.saturating_duration_since(Instant::now())).expect("an event on server two");
        let event: serde_json::Value = serde_json::from_str(&event).unwrap();
        if event["run_id"] == run_id.as_str() && event["kind"] == "logged" && event["history_offset"].as_u64() > Some(0) {
            break;
        }
    }

    // Server one dies mid-ingest, and comes back on its port; the client carries on.
    let port = one.port();
    one.signal(libc::SIGKILL);
    drop(one);
    let _one = ServerProcess::start_on(port, data_one.path(), &args, &env);
    let logged = logged_until(&mut lines, 30_000, &mut run_id);
    wait_until("server one to hold step 30000", Duration::from_secs(60), || two.api().get_run(&path).is_ok_and(|run| run.last_step.is_some_and(|s| s >= 30_000)));

    // The client dies; what it had not sent goes up through server two, and everything is
    // there once, whichever server took it.
    process.kill().unwrap();
    process.wait().unwrap();
    let last_logged = lines.filter_map(|l| l.strip_prefix("logged ").and_then(|s| s.parse().ok())).last().unwrap_or(logged);
    let sync = cairn(&["sync", run_dir(work.path()).to_str().unwrap(), "--base-url", &two.url]);
    assert!(sync.status.success(), "{}", String::from_utf8_lossy(&sync.stderr));
    let count = assert_exactly_once(&two.api(), &path, last_logged);
    assert_eq!(two.api().get_run(&path).unwrap().offsets.history as usize, count);

    checkpoint_round_trip(&_one, &two, "files", &endpoint, &bucket, &prefix, &[data_one.path(), data_two.path()]);
}

/// The JSON error of a request that failed with `status`, and its Retry-After header.
fn failed(reply: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Option<(u16, Option<String>, serde_json::Value)> {
    let mut reply = reply.ok()?;
    let status = reply.status().as_u16();
    let retry = reply.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let body: serde_json::Value = reply.body_mut().read_json().unwrap_or_default();
    Some((status, retry, body))
}

fn no_status_errors() -> ureq::Agent {
    ureq::Agent::config_builder().http_status_as_error(false).build().into()
}

/// PostgreSQL stops (as in a crash) while a run logs: requests answer 503 with Retry-After and
/// `backend_unavailable`, the server does not fall over, and once the database is back the client
/// carries on by itself; nothing is lost or stored twice.
#[test]
fn the_server_rides_out_a_database_restart() {
    let Some(cluster) = cairn_store::postgres::testing::Cluster::start() else { return };
    let (data, work) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut server = ServerProcess::start(data.path(), &["--default-entity", "nico", "--store", &cluster.url()]);
    let envs = [("CAIRN_BASE_URL", server.url.clone()), ("CAIRN_DIR", work.path().display().to_string()), ("CAIRN_ENTITY", "tester".to_owned())];
    let mut process = Guard(child("log-forever", &envs).stdout(Stdio::piped()).spawn().unwrap());
    let mut lines = BufReader::new(process.stdout.take().unwrap()).lines().map_while(Result::ok);
    let mut run_id = String::new();
    logged_until(&mut lines, 5_000, &mut run_id);
    let path = RunPath::new("tester", "e2e", &run_id);
    wait_until("the first steps on the server", Duration::from_secs(30), || server.api().get_run(&path).is_ok_and(|r| r.last_step.is_some()));

    cluster.stop();
    let agent = no_status_errors();
    let url = format!("{}/api/v1/runs/{path}", server.url);
    let (status, retry, body) = failed(agent.get(&url).call()).expect("an answer while the database is down");
    assert_eq!(status, 503, "{body}");
    assert!(retry.is_some(), "503 without Retry-After");
    assert_eq!(body["code"], "backend_unavailable", "{body}");
    assert!(body["message"].as_str().unwrap().contains("PostgreSQL"), "{body}");
    // The client logs on meanwhile, into its run directory.
    logged_until(&mut lines, 15_000, &mut run_id);
    std::thread::sleep(Duration::from_secs(1));
    cluster.resume();

    let logged = logged_until(&mut lines, 25_000, &mut run_id);
    wait_until("the server to catch up after the restart", Duration::from_secs(60), || server.api().get_run(&path).is_ok_and(|run| run.last_step.is_some_and(|s| s >= logged)));
    assert!(server.child.try_wait().unwrap().is_none(), "the server exited");
    process.kill().unwrap();
    process.wait().unwrap();
    let last_logged = lines.filter_map(|l| l.strip_prefix("logged ").and_then(|s| s.parse().ok())).last().unwrap_or(logged);
    let sync = cairn(&["sync", run_dir(work.path()).to_str().unwrap(), "--base-url", &server.url]);
    assert!(sync.status.success(), "{}", String::from_utf8_lossy(&sync.stderr));
    assert_exactly_once(&server.api(), &path, last_logged);
    let _ = &mut server;
}

/// The bucket goes away in the middle of an upload: the part answers 503 with Retry-After, and
/// when the bucket is back the upload starts over from what it holds and the file reads back whole.
#[test]
fn uploads_wait_out_a_bucket_outage() {
    use sha2::Digest as _;
    // A bucket of this test's own, on an S3 API it can stop: moto, from the suite's venv.
    let python = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python");
    if !python.exists() {
        assert!(std::env::var_os("CI").is_none(), "no venv with moto at {}: run scripts/test.sh", python.display());
        eprintln!("skipped: no venv with moto");
        return;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let own = format!("http://127.0.0.1:{port}");
    let start_moto = || -> Guard {
        let moto = Guard(
            std::process::Command::new(&python)
                .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start moto"),
        );
        wait_until("moto to answer", Duration::from_secs(30), || ureq::get(&own).call().is_ok());
        no_status_errors().put(format!("{own}/outage")).send_empty().expect("create the bucket");
        moto
    };
    let mut moto = start_moto();
    let data = tempfile::tempdir().unwrap();
    let server = ServerProcess::start_with_env(data.path(), &["--default-entity", "nico", "--blobs", "s3://outage/cairn"], &s3_env(&own));
    let run = format!("{}/api/v1/runs/nico/outage/r1", server.url);
    let agent = no_status_errors();
    agent.post(format!("{}/api/v1/runs", server.url)).send_json(serde_json::json!({"entity": "nico", "project": "outage", "run_id": "r1"})).unwrap();
    let content: Vec<u8> = (0..3_000_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8).collect();
    let sha = cairn_store::blob::hex(&sha2::Sha256::digest(&content));
    let put = |from: usize, to: usize| failed(agent.put(format!("{}/api/v1/uploads/{sha}?offset={from}&size={}", server.url, content.len())).send(&content[from..to]));
    let (status, _, body) = put(0, 1_000_000).unwrap();
    assert_eq!((status, body["received"].as_u64()), (200, Some(1_000_000)), "{body}");

    moto.kill().unwrap();
    moto.wait().unwrap();
    let (status, retry, body) = put(1_000_000, content.len()).unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(retry.is_some(), "503 without Retry-After");
    assert_eq!(body["code"], "backend_unavailable", "{body}");

    // Back (empty: moto keeps nothing): the client asks what is held and sends from there.
    let _moto = start_moto();
    let held: serde_json::Value = agent.get(format!("{}/api/v1/uploads/{sha}", server.url)).call().unwrap().body_mut().read_json().unwrap();
    let from = held["received"].as_u64().unwrap() as usize;
    let (status, _, body) = put(from, content.len()).unwrap();
    assert_eq!((status, body["complete"].as_bool()), (200, Some(true)), "{body}");
    let (status, _, body) = failed(agent.put(format!("{run}/files/model.bin?sha256={sha}")).send_empty()).unwrap();
    assert_eq!(status, 200, "{body}");
    let got = agent.get(format!("{run}/files/model.bin")).call().unwrap().body_mut().with_config().limit(u64::MAX).read_to_vec().unwrap();
    assert_eq!(got, content);
}

/// `cairn migrate` moves a data directory onto PostgreSQL and S3 in two steps (as if stopped
/// once), checks the counts, and a server on the target serves what a server on the source did.
#[test]
fn migrate_moves_a_data_directory_onto_postgres_and_s3() {
    let Some((endpoint, bucket)) = s3_endpoint() else { return };
    let Some((store, _schema)) = cairn_store::postgres::testing::fresh_schema() else { return };
    let (data, work) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let source = ServerProcess::start(data.path(), &["--default-entity", "nico"]);
    std::fs::write(work.path().join("notes.txt"), "a file of the first run").unwrap();
    for (i, id) in ["m1", "m2", "m3"].iter().enumerate() {
        let run = cairn_client::init(
            cairn_client::Settings::new()
                .base_url(source.url.clone())
                .project("moving")
                .run_id(*id)
                .dir(work.path().to_owned())
                .silent(true)
                .console(cairn_client::Console::Off)
                .stats_interval(Duration::ZERO),
        )
        .unwrap();
        for step in 0..2_000 {
            run.log([("loss", 1.0 / (step + i + 1) as f64)]).unwrap();
        }
        if i == 0 {
            run.save(work.path().join("notes.txt").to_str().unwrap(), Some(work.path()), cairn_client::files::Policy::Now).unwrap();
        }
        run.finish(None).unwrap();
    }
    let paths: Vec<RunPath> = ["m1", "m2", "m3"].iter().map(|id| RunPath::new("nico", "moving", *id)).collect();
    let read = |server: &ServerProcess, path: &RunPath| {
        let mut run = serde_json::to_value(server.api().get_run(path).unwrap()).unwrap();
        run.as_object_mut().unwrap().remove("seq");
        (run, read_back(&server.api(), path, "loss"))
    };
    let before: Vec<_> = paths.iter().map(|p| read(&source, p)).collect();
    drop(source);

    let prefix = fresh_prefix("migrate");
    let blobs = format!("s3://{bucket}/{prefix}");
    let env = s3_env(&endpoint);
    let migrate = |extra: &[&str]| {
        let output = std::process::Command::new(crate::CAIRN)
            .args(["migrate", "--data-dir", data.path().to_str().unwrap(), "--store", &store, "--blobs", &blobs])
            .args(extra)
            .envs(env.iter().copied())
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let first = migrate(&["--max-runs", "1"]);
    assert!(first.contains("copied 1 run ") && first.contains("2 runs left"), "{first}");
    let second = migrate(&[]);
    assert!(second.contains("copied 2 runs") && second.contains("1 run there already"), "{second}");
    assert!(second.contains("every run is in the target"), "{second}");
    assert!(second.lines().any(|l| l.starts_with("points") && l.split_whitespace().nth(1) == l.split_whitespace().nth(2)), "{second}");

    let target_dir = tempfile::tempdir().unwrap();
    let target = ServerProcess::start_with_env(target_dir.path(), &["--default-entity", "nico", "--store", &store, "--blobs", &blobs], &env);
    for (path, want) in paths.iter().zip(&before) {
        assert_eq!(&read(&target, path), want, "{path}");
    }
    let file = ureq::get(format!("{}/api/v1/runs/nico/moving/m1/files/notes.txt", target.url)).call().unwrap().body_mut().read_to_string().unwrap();
    assert_eq!(file, "a file of the first run");
}

/// Counts the POSTs a webhook receives whose body contains `needle`; answers 200 to each, slowly.
fn webhook(needle: &'static str) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::{Read as _, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = count.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            // Headers, then as much body as Content-Length says.
            while let Ok(n) = stream.read(&mut buf) {
                if n == 0 {
                    break;
                }
                request.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&request);
                if let Some(end) = text.find("\r\n\r\n") {
                    let length =
                        text[..end].lines().find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse::<usize>().unwrap_or(0))).unwrap_or(0);
                    if request.len() >= end + 4 + length {
                        break;
                    }
                }
            }
            if String::from_utf8_lossy(&request).contains(needle) {
                seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
            // A slow receiver: a delivery takes longer than the servers' delivery interval, so a
            // second server that did not see the first one's claim would send the alert again.
            std::thread::sleep(Duration::from_millis(1500));
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
        }
    });
    (url, count)
}

/// Two servers on one database, both with their monitors and alert delivery on: batches of one
/// run sent to both, out of order and each sent twice, are stored exactly once with no gap; its
/// alert reaches the webhook once, not once per server; its crash is marked once.
#[test]
fn two_servers_deliver_each_alert_once_and_take_batches_in_any_order() {
    let Some((store, _schema)) = cairn_store::postgres::testing::fresh_schema() else { return };
    let (hook, delivered) = webhook("alert-once");
    let (data_one, data_two) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let args = ["--default-entity", "nico", "--store", &store, "--alert-webhook-url", &hook, "--heartbeat-timeout-secs", "2", "--monitor-interval-secs", "0.3"];
    let one = ServerProcess::start(data_one.path(), &args);
    let two = ServerProcess::start(data_two.path(), &args);
    let servers = [&one.url, &two.url];
    let events = events_of(format!("{}/api/v1/events?project=mon", two.url));
    let agent = no_status_errors();
    let created = agent.post(format!("{}/api/v1/runs", one.url)).send_json(serde_json::json!({"entity": "nico", "project": "mon", "run_id": "r"})).unwrap();
    assert_eq!(created.status().as_u16(), 200);

    // 40 batches of 10 rows, in a shuffled order, to alternating servers; a batch ahead of what
    // is stored is refused (offset_gap) and sent again later; each accepted batch is sent once
    // more to the other server, as a client whose answer was lost would.
    let batch = |b: u64| {
        let rows: Vec<serde_json::Value> = (b * 10..b * 10 + 10).map(|i| serde_json::json!({"_step": i, "loss": i as f64 * 0.5})).collect();
        serde_json::json!({"history": {"offset": b * 10, "rows": rows}})
    };
    let mut pending: Vec<u64> = (0..40).collect();
    fastrand::seed(7);
    fastrand::shuffle(&mut pending);
    let mut rounds = 0;
    while !pending.is_empty() {
        rounds += 1;
        assert!(rounds < 200, "batches still refused: {pending:?}");
        let mut left = Vec::new();
        for (n, b) in pending.into_iter().enumerate() {
            let url = |s: usize| format!("{}/api/v1/runs/nico/mon/r/ingest", servers[s]);
            let (status, _, body) = failed(agent.post(url(n % 2)).send_json(batch(b))).unwrap();
            match status {
                200 => {
                    let (again, _, body) = failed(agent.post(url((n + 1) % 2)).send_json(batch(b))).unwrap();
                    assert_eq!(again, 200, "a batch sent again: {body}");
                }
                409 => {
                    assert_eq!(body["code"], "offset_gap", "{body}");
                    left.push(b);
                }
                other => panic!("{other}: {body}"),
            }
        }
        pending = left;
    }
    let (steps, values) = read_back(&two.api(), &RunPath::new("nico", "mon", "r"), "loss");
    assert_eq!(steps, (0..400).collect::<Vec<i64>>());
    assert!(steps.iter().zip(&values).all(|(s, v)| *v == Some(*s as f64 * 0.5)));

    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    let alert = serde_json::json!({"events": {"offset": 0, "events": [{"type": "alert", "title": "alert-once", "text": "loss went up", "level": "WARN", "time": now}]}});
    let (status, _, body) = failed(agent.post(format!("{}/api/v1/runs/nico/mon/r/ingest", two.url)).send_json(alert)).unwrap();
    assert_eq!(status, 200, "{body}");
    wait_until("the alert at the webhook", Duration::from_secs(30), || delivered.load(std::sync::atomic::Ordering::SeqCst) > 0);

    // No heartbeat since: the run is marked crashed, once, whichever monitor saw it.
    let mut crashed = 0;
    let deadline = Instant::now() + Duration::from_secs(8);
    while let Ok(event) = events.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        let event: serde_json::Value = serde_json::from_str(&event).unwrap();
        if event["run_id"] == "r" && event["kind"] == "crashed" {
            crashed += 1;
        }
    }
    assert_eq!(crashed, 1, "crash events on server two's stream");
    assert_eq!(two.api().get_run(&RunPath::new("nico", "mon", "r")).unwrap().state, RunState::Crashed);
    assert_eq!(delivered.load(std::sync::atomic::Ordering::SeqCst), 1, "the alert went out more than once");
    let alerts: serde_json::Value = agent.get(format!("{}/api/v1/runs/nico/mon/r/alerts", one.url)).call().unwrap().body_mut().read_json().unwrap();
    assert_eq!(alerts[0]["delivery"], "delivered", "{alerts}");
}

/// `cairn users`, `teams` and `keys` administer the store of a running server, and a key is
/// printed once, alone on the last line, then listed only by its first characters.
#[test]
fn users_teams_and_keys_from_the_shell_while_the_server_runs() {
    let data = tempfile::tempdir().unwrap();
    let _server = ServerProcess::start(data.path(), &["--default-entity", "nico"]);
    let dir = data.path().to_str().unwrap();
    let ok = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--data-dir", dir]);
        let out = cairn(&all);
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    ok(&["users", "create", "ana", "--admin"]);
    ok(&["users", "create", "bo"]);
    ok(&["teams", "create", "lab"]);
    ok(&["teams", "add-member", "lab", "bo", "--role", "viewer"]);
    assert!(ok(&["teams", "members", "lab"]).contains("bo"));
    let listed = ok(&["users", "list"]);
    assert!(listed.contains("ana") && listed.contains("lab"), "{listed}");
    let created = ok(&["keys", "create", "--user", "bo", "--name", "laptop", "--expires-days", "30"]);
    let key = created.lines().last().unwrap().trim().to_owned();
    assert!(key.starts_with("cairn-") && key.len() == 46 && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'), "{created}");
    let list = ok(&["keys", "list", "--user", "bo"]);
    assert!(list.contains("laptop") && list.contains(&key[..12]) && !list.contains(&key), "{list}");
    assert!(ok(&["keys", "revoke", &key]).contains("revoked"));
    let after = ok(&["keys", "list", "--user", "bo"]);
    assert!(after.lines().nth(1).unwrap().trim_end().ends_with(|c: char| c.is_ascii_digit()), "the revocation time is shown: {after}");
    // Bad input names what was wrong.
    let dup = cairn(&["users", "create", "lab", "--data-dir", dir]);
    assert!(!dup.status.success() && String::from_utf8_lossy(&dup.stderr).contains("already"));
    let role = cairn(&["teams", "add-member", "lab", "ana", "--role", "owner", "--data-dir", dir]);
    assert!(String::from_utf8_lossy(&role.stderr).contains("admin, member or viewer"));
}

#[test]
fn artifacts_from_the_shell_put_list_and_get() {
    let data = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(data.path(), &[]);
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("ds");
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    std::fs::write(dir.join("a.txt"), b"alpha").unwrap();
    std::fs::write(dir.join("sub/b.bin"), vec![7u8; 300_000]).unwrap();
    let put = |extra: &[&str]| {
        let mut args = vec!["artifact", "put", dir.to_str().unwrap(), "--name", "ds", "--type", "dataset", "--project", "arts", "--base-url", &server.url];
        args.extend_from_slice(extra);
        let out = cairn(&args);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let first = put(&["--alias", "best"]);
    assert!(first.contains("/arts/ds:v0 (2 files"), "{first}");
    assert!(put(&[]).contains("ds:v0"), "the same content is the same version");
    std::fs::write(dir.join("a.txt"), b"alpha, changed").unwrap();
    assert!(put(&[]).contains("ds:v1"));

    let info = server.api().info().unwrap();
    let listed = cairn(&["artifact", "ls", &format!("{}/arts", info.default_entity), "--base-url", &server.url]);
    let listed = String::from_utf8_lossy(&listed.stdout).into_owned();
    assert!(listed.contains("ds:v1") && listed.contains("ds:v0") && listed.contains("best"), "{listed}");

    let root = work.path().join("got");
    let got = cairn(&["artifact", "get", "ds:best", "--project", "arts", "--root", root.to_str().unwrap(), "--base-url", &server.url]);
    assert!(got.status.success(), "{}", String::from_utf8_lossy(&got.stderr));
    assert_eq!(std::fs::read(root.join("a.txt")).unwrap(), b"alpha");
    assert_eq!(std::fs::read(root.join("sub/b.bin")).unwrap(), vec![7u8; 300_000]);
    let missing = cairn(&["artifact", "get", "ds:nope", "--project", "arts", "--base-url", &server.url]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("ds:nope not found"), "{}", String::from_utf8_lossy(&missing.stderr));
}

/// A big artifact file: cut off by SIGKILL of the client, then of the server, and resumed each
/// time from what the server holds; what arrives in the end is the file, byte for byte.
#[test]
fn artifact_uploads_resume_after_sigkill_of_the_client_and_of_the_server() {
    use sha2::Digest as _;
    let data = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let big = work.path().join("big");
    std::fs::create_dir_all(&big).unwrap();
    let mut bytes = vec![0u8; 600 << 20];
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    for b in bytes.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        b.copy_from_slice(&x.to_le_bytes());
    }
    std::fs::write(big.join("weights.bin"), &bytes).unwrap();
    let sha: String = sha2::Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
    let mut server = ServerProcess::start(data.path(), &[]);
    let port = server.port();
    let put = |url: &str| {
        std::process::Command::new(crate::CAIRN)
            .args(["artifact", "put", big.to_str().unwrap(), "--name", "big", "--type", "model", "--project", "resume", "--base-url", url])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let received = |api: &cairn_client::http::ApiClient| api.upload_status(&sha).map(|s| (s.received, s.complete));
    let wait_for_part = |api: &cairn_client::http::ApiClient, beyond: u64| {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok((got, false)) = received(api)
                && got > beyond
            {
                return got;
            }
            assert!(std::time::Instant::now() < deadline, "no part arrived");
            std::thread::sleep(Duration::from_millis(5));
        }
    };

    // The client is killed mid-upload: what arrived stays, and the next put goes on from there.
    let mut client = put(&server.url);
    let api = server.api();
    let held = wait_for_part(&api, 0);
    client.kill().unwrap();
    client.wait().unwrap();
    // The server stores what it had read of the cut-off body, then settles.
    std::thread::sleep(Duration::from_millis(1000));
    let (after_kill, complete) = received(&api).unwrap();
    assert!(after_kill >= held && !complete, "{after_kill} of {}", bytes.len());

    // The server is killed mid-upload and started again on its port: the client retries and
    // resumes.
    let client = put(&server.url);
    let _ = wait_for_part(&api, after_kill);
    server.signal(libc::SIGKILL);
    let _ = server.child.wait();
    std::thread::sleep(Duration::from_millis(300));
    server = ServerProcess::start_on(port, data.path(), &[], &[]);
    let out = client.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("/resume/big:v0"), "{}", String::from_utf8_lossy(&out.stdout));

    let root = work.path().join("down");
    let got = cairn(&["artifact", "get", "big:latest", "--project", "resume", "--root", root.to_str().unwrap(), "--base-url", &server.url]);
    assert!(got.status.success(), "{}", String::from_utf8_lossy(&got.stderr));
    assert!(std::fs::read(root.join("weights.bin")).unwrap() == bytes, "the file arrived whole and unchanged");

    // The next version, a third of it rewritten in 64 places, goes in chunks; the client is
    // killed after some arrived, and the next put sends only the rest.
    let old: std::collections::HashSet<String> = cairn_client::chunks::chunk_file(&big.join("weights.bin")).unwrap().into_iter().map(|c| c.sha256).collect();
    let step = bytes.len() / 64;
    for i in 0..64 {
        for b in &mut bytes[step * i..step * i + step / 3] {
            *b = b.rotate_left(3);
        }
    }
    std::fs::write(big.join("weights.bin"), &bytes).unwrap();
    let mut fresh: Vec<String> = cairn_client::chunks::chunk_file(&big.join("weights.bin")).unwrap().into_iter().map(|c| c.sha256).filter(|c| !old.contains(c)).collect();
    fresh.sort();
    fresh.dedup();
    let api = server.api();
    let lacking = || api.missing_chunks(&fresh, None).unwrap().len();
    assert_eq!(lacking(), fresh.len());
    let mut client = put(&server.url);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while lacking() == fresh.len() {
        assert!(std::time::Instant::now() < deadline, "no chunk arrived");
        std::thread::sleep(Duration::from_millis(5));
    }
    client.kill().unwrap();
    client.wait().unwrap();
    let left = lacking();
    eprintln!("after the kill, {left} of {} new chunks lacking", fresh.len());
    assert!(left < fresh.len(), "{left} of {} chunks lacking", fresh.len());
    let out = put(&server.url).wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("/resume/big:v1"), "{}", String::from_utf8_lossy(&out.stdout));
    assert_eq!(lacking(), 0);
    let root = work.path().join("down-v1");
    let got = cairn(&["artifact", "get", "big:v1", "--project", "resume", "--root", root.to_str().unwrap(), "--base-url", &server.url]);
    assert!(got.status.success(), "{}", String::from_utf8_lossy(&got.stderr));
    assert!(std::fs::read(root.join("weights.bin")).unwrap() == bytes, "the new version arrived whole and unchanged");
}

/// Bytes of the files under `dir`, recursively.
fn bytes_under(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| {
            let meta = e.metadata().unwrap();
            if meta.is_dir() { bytes_under(&e.path()) } else { meta.len() }
        })
        .sum()
}

/// The next version of a checkpoint, changed in 16 places (1% of it) with 100 bytes inserted
/// near its start: `cairn artifact put` sends it in chunks and the server stores only a few
/// percent of it; both versions come back byte for byte, and deleting the first keeps every
/// chunk the second needs.
#[test]
fn a_changed_checkpoint_stores_only_the_chunks_that_changed() {
    let data = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(data.path(), &[]);
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("model");
    std::fs::create_dir_all(&dir).unwrap();
    let size = 48usize << 20;
    let mut bytes = vec![0u8; size];
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    for b in bytes.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        b.copy_from_slice(&x.to_le_bytes());
    }
    let first = bytes.clone();
    std::fs::write(dir.join("model.ckpt"), &bytes).unwrap();
    std::fs::write(work.path().join("first.ckpt"), &bytes).unwrap();
    let put = || {
        let out = cairn(&["artifact", "put", dir.to_str().unwrap(), "--name", "net", "--type", "model", "--project", "ckpt", "--base-url", &server.url]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(put().contains("net:v0"));
    let blobs = data.path().join("blobs");
    let after_first = bytes_under(&blobs);
    assert!(after_first >= size as u64);

    let place = size / 100 / 16;
    for i in 0..16 {
        let at = size / 16 * i + 12_345;
        for b in &mut bytes[at..at + place] {
            *b = !*b;
        }
    }
    bytes.splice(2000..2000, [42u8; 100]);
    std::fs::write(dir.join("model.ckpt"), &bytes).unwrap();
    let old: std::collections::HashSet<String> = cairn_client::chunks::chunk_file(&work.path().join("first.ckpt")).unwrap().into_iter().map(|c| c.sha256).collect();
    assert!(put().contains("net:v1"));
    // Exactly the chunks that the first version lacks, each once: a few per edit.
    let mut fresh = std::collections::HashMap::new();
    for c in cairn_client::chunks::chunk_file(&dir.join("model.ckpt")).unwrap() {
        if !old.contains(&c.sha256) {
            fresh.insert(c.sha256, c.size);
        }
    }
    let stored = bytes_under(&blobs) - after_first;
    assert_eq!(stored, fresh.values().sum::<u64>(), "the new version stored other bytes than its new chunks");
    assert!(fresh.len() <= 17 * 3 && stored * 10 < bytes.len() as u64, "{} new chunks, {stored} bytes of {}", fresh.len(), bytes.len());

    let get = |version: &str, into: &str| {
        let root = work.path().join(into);
        let out = cairn(&["artifact", "get", &format!("net:{version}"), "--project", "ckpt", "--root", root.to_str().unwrap(), "--base-url", &server.url]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        std::fs::read(root.join("model.ckpt")).unwrap()
    };
    assert!(get("v1", "v1") == bytes, "the new version comes back byte for byte");
    assert!(get("v0", "v0") == first, "and so does the first");

    // The first version deleted: the chunks the second shares with it stay.
    let api = server.api();
    let info = api.info().unwrap();
    api.call_json("DELETE", &format!("/api/v1/artifacts/{}/ckpt/net/v0", info.default_entity), None).unwrap();
    assert!(get("v1", "v1-again") == bytes);
}

#[test]
fn the_rust_client_logs_images_tables_and_histograms_as_typed_values() {
    use cairn_client::Settings;
    use cairn_types::value::{Histogram, Value};
    use sha2::Digest;
    let data = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(data.path(), &[]);
    let run = cairn_client::init(Settings::new().base_url(server.url.clone()).entity("nico").project("typed").run_id("typed1").dir(work.path()).silent(true)).unwrap();
    let pixels = |shade: u8| (0..300 * 200 * 3).map(|i| (i as u8).wrapping_mul(shade)).collect::<Vec<u8>>();
    for step in 0..3u8 {
        let image = cairn_client::media::image(300, 200, 3, pixels(step + 1), Some("noise")).unwrap();
        let cell = cairn_client::media::image(8, 8, 1, vec![step * 10; 64], None).unwrap();
        let table = cairn_client::media::table(vec!["image".into(), "n".into()], vec![vec![cell, Value::Int(step as i64)]]).unwrap();
        let hist: Value = Histogram::of(&[1.0, 2.0, 2.5, f64::from(step)], 4).unwrap().into();
        run.log([("img", image), ("table", table), ("hist", hist)]).unwrap();
    }
    // A bad image is refused at once, naming what is wrong; nothing is written for it.
    let err = cairn_client::media::image(2, 2, 2, vec![0; 8], None).unwrap_err();
    assert!(err.message.contains("1, 3 or 4 channels"), "{}", err.message);
    run.finish(None).unwrap();

    let api = server.api();
    let path = RunPath::new("nico", "typed", "typed1");
    let info = api.get_run(&path).unwrap();
    let Some(Value::Media(img)) = info.summary.get("img") else { panic!("the summary keeps the last image: {:?}", info.summary.get("img")) };
    let stored = img.stored().expect("stored");
    assert_eq!((img.width, img.height, img.caption.as_deref(), img.format.as_str()), (300, 200, Some("noise"), "png"));
    assert!(stored.thumb.is_some(), "a 300 px image has a thumbnail");
    let mut bytes = Vec::new();
    api.download_run_file(&path, &stored.path, &mut bytes).unwrap();
    assert_eq!(bytes.len() as u64, stored.size);
    assert_eq!(cairn_store::blob::hex(&sha2::Sha256::digest(&bytes)), stored.sha256);
    let Some(Value::Table(table)) = info.summary.get("table") else { panic!("a table") };
    let Value::Media(cell) = &table.rows[0][0] else { panic!("an image cell: {:?}", table.rows[0][0]) };
    let mut cell_bytes = Vec::new();
    api.download_run_file(&path, &cell.stored().unwrap().path, &mut cell_bytes).unwrap();
    assert_eq!(cairn_types::media::sniff_size(&cell_bytes), (8, 8));
    assert!(matches!(info.summary.get("hist"), Some(Value::Histogram(h)) if h.total() == 4.0));
    // Each step's image is its own file, in the history.
    let columns = api.history_columns(&path, Some(&["img".to_owned()]), None, None, 100, true).unwrap();
    let ColumnValues::Values(images) = &columns.columns[0].data else { panic!("media are values") };
    let shas: std::collections::HashSet<String> = images
        .iter()
        .map(|v| match v {
            Some(Value::Media(m)) => m.stored().unwrap().sha256.clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(shas.len(), 3);
}
