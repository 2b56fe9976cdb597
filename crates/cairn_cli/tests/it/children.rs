//! The client processes of the end-to-end tests. Each role reads what it needs from the environment
//! and reports on stdout, one line per event.

use std::io::Write;
use std::time::Duration;

use cairn_client::{Settings, map};

/// Value logged at `step`, so the tests can check every point.
pub fn value_at(step: i64) -> f64 {
    step as f64 * 0.25 + 1.0
}

#[test]
fn child() {
    let Ok(role) = std::env::var("CAIRN_TEST_CHILD") else { return };
    let settings = Settings::new().project("e2e").config(map! {"role" => role.as_str()});
    let mut out = std::io::stdout().lock();
    // libtest has printed "test children::child ... " without a newline: end that line first.
    writeln!(out).unwrap();
    match role.as_str() {
        // Logs steps forever; prints each step once `log` has returned.
        "log-forever" => {
            let run = cairn_client::init(settings).unwrap();
            writeln!(out, "dir {}", run.dir().unwrap().display()).unwrap();
            writeln!(out, "id {}", run.id()).unwrap();
            for step in 0.. {
                if step % 7 == 3 {
                    // An open row, amended, then committed.
                    run.log_at(step, [("sparse", step)], false).unwrap();
                    run.log_at(step, [("loss", value_at(step))], true).unwrap();
                } else {
                    run.log([("loss", value_at(step))]).unwrap();
                }
                writeln!(out, "logged {step}").unwrap();
                if step % 1000 == 0 {
                    out.flush().unwrap();
                }
            }
        }
        // Logs a step every millisecond for two seconds, then finishes.
        "log-two-seconds" => {
            let run = cairn_client::init(settings).unwrap();
            let started = std::time::Instant::now();
            let mut steps = 0i64;
            while started.elapsed() < Duration::from_secs(2) {
                run.log([("loss", value_at(steps))]).unwrap();
                steps += 1;
                std::thread::sleep(Duration::from_millis(1));
            }
            let report = run.finish(None).unwrap();
            writeln!(out, "logged {steps} {} uploaded={}", run.path().unwrap(), report.uploaded).unwrap();
        }
        // Logs a little, then sleeps without finishing (its heartbeats continue until killed).
        "log-then-sleep" => {
            let run = cairn_client::init(settings).unwrap();
            run.log([("loss", 1.0)]).unwrap();
            assert!(run.wait_uploaded(Duration::from_secs(10)));
            writeln!(out, "ready {}", run.path().unwrap()).unwrap();
            out.flush().unwrap();
            std::thread::sleep(Duration::from_secs(600));
        }
        // Logs until the server says stop, then reports how it ended.
        "wait-for-stop" => {
            let run = cairn_client::init(settings).unwrap();
            let (tx, rx) = std::sync::mpsc::channel();
            run.on_stop(move || tx.send(()).unwrap());
            run.log([("loss", 1.0)]).unwrap();
            assert!(run.wait_uploaded(Duration::from_secs(10)));
            writeln!(out, "ready {}", run.path().unwrap()).unwrap();
            out.flush().unwrap();
            rx.recv_timeout(Duration::from_secs(60)).expect("the stop reaches the client");
            assert!(run.stop_requested());
            let err = run.log([("loss", 2.0)]).unwrap_err();
            assert_eq!(err.kind, cairn_client::ErrorKind::Finished);
            let report = run.finish(None).unwrap();
            writeln!(out, "ended {}", report.state.as_str()).unwrap();
        }
        // Logs to a server that is not there: finish must still return, quickly.
        "unreachable" => {
            let run = cairn_client::init(settings.finish_timeout(Duration::from_millis(1500))).unwrap();
            writeln!(out, "dir {}", run.dir().unwrap().display()).unwrap();
            for step in 0..500 {
                run.log([("loss", value_at(step))]).unwrap();
            }
            let started = std::time::Instant::now();
            let report = run.finish(None).unwrap();
            writeln!(out, "finish took {} ms uploaded={}", started.elapsed().as_millis(), report.uploaded).unwrap();
            writeln!(out, "pending {}", report.pending.unwrap_or_default()).unwrap();
        }
        // The server accepts connections and never answers.
        "hung" => {
            let started = std::time::Instant::now();
            let run = cairn_client::init(settings.finish_timeout(Duration::from_millis(1500))).unwrap();
            writeln!(out, "init took {} ms", started.elapsed().as_millis()).unwrap();
            run.log([("loss", 1.0)]).unwrap();
            let started = std::time::Instant::now();
            let report = run.finish(None).unwrap();
            writeln!(out, "finish took {} ms uploaded={}", started.elapsed().as_millis(), report.uploaded).unwrap();
        }
        other => panic!("unknown child role {other}"),
    }
}
