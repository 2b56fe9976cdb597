//! Fault injection with the real binary: the server's data directory on a small filesystem that
//! fills up mid-ingest. Needs to mount a tmpfs (root on Linux); elsewhere it says so and passes.

use std::path::{Path, PathBuf};
use std::process::Command;

use cairn_types::RunPath;
use cairn_types::api::UpsertRunRequest;

use crate::ServerProcess;

/// A tmpfs of `mb` MiB at a fresh folder, unmounted when dropped.
struct SmallFs {
    dir: PathBuf,
    _parent: tempfile::TempDir,
}

impl SmallFs {
    fn mount(mb: u32) -> Option<SmallFs> {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("small");
        std::fs::create_dir(&dir).unwrap();
        let ok = Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={mb}m"), "tmpfs"]).arg(&dir).status().is_ok_and(|s| s.success());
        ok.then_some(SmallFs { dir, _parent: parent })
    }

    fn grow(&self, mb: u32) {
        let ok = Command::new("mount").args(["-o", &format!("remount,size={mb}m")]).arg(&self.dir).status().unwrap().success();
        assert!(ok, "cannot grow the tmpfs");
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

fn integrity(db: &Path) -> String {
    let problems = cairn_store::sqlite::check_integrity(db).unwrap();
    if problems.is_empty() { "ok".to_owned() } else { problems.join("\n") }
}

#[test]
fn a_full_disk_refuses_with_storage_full_keeps_the_store_whole_and_ingest_resumes_when_freed() {
    let Some(fs) = SmallFs::mount(6) else {
        eprintln!("skipped: cannot mount a tmpfs here (not root, or not Linux)");
        return;
    };
    let server = ServerProcess::start(&fs.dir, &[]);
    let api = server.api();
    let path = RunPath::new("tester", "full", "r1");
    api.upsert_run(&UpsertRunRequest { entity: Some("tester".into()), project: Some("full".into()), run_id: "r1".into(), ..Default::default() }).unwrap();

    // Files of 512 KiB (each its own content: contents are stored once) until the disk refuses one.
    let content = |i: usize| -> Vec<u8> { (0..512usize << 10).map(|j| (j.wrapping_mul(31) ^ i) as u8).collect() };
    let mut stored_files = 0;
    let refused = loop {
        let chunk = content(stored_files);
        match api.put_file(&path, &format!("f{stored_files}.bin"), &mut &chunk[..], chunk.len() as u64) {
            Ok(_) => stored_files += 1,
            Err(e) => break e,
        }
        assert!(stored_files < 64, "a 6 MiB disk took 32 MiB");
    };
    let err = refused.into_coded();
    assert_eq!(err.code, cairn_types::error::ErrorCode::StorageFull, "{}", err.message);
    assert!(err.message.contains("disk is full"), "{}", err.message);
    // History rows of big values until the database refuses them too.
    let mut offset = 0u64;
    let row_batch = |offset: u64| -> cairn_types::api::IngestJson {
        let rows: Vec<serde_json::Value> = (0..50).map(|i| serde_json::json!({"_step": offset + i, "text": "x".repeat(8 << 10), "loss": 0.5})).collect();
        serde_json::from_value(serde_json::json!({"history": {"offset": offset, "rows": rows}})).unwrap()
    };
    let refused = loop {
        match api.ingest_json(&path, &row_batch(offset)) {
            Ok(ack) => offset = ack.offsets.history,
            Err(e) => break e,
        }
        assert!(offset < 100_000, "the database never filled up");
    };
    let err = refused.into_coded();
    assert!(matches!(err.code, cairn_types::error::ErrorCode::StorageFull), "a full disk during ingest answered {:?}: {}", err.code, err.message);
    // The server is still up, answers reads, and what it acknowledged is there.
    assert_eq!(api.get_run(&path).unwrap().offsets.history, offset);
    assert_eq!(api.list_files(&path).unwrap().len(), stored_files);
    assert_eq!(integrity(&fs.dir.join("cairn.db")), "ok");

    // Space is freed: the same requests go through, nothing before them is lost.
    fs.grow(64);
    let ack = api.ingest_json(&path, &row_batch(offset)).unwrap();
    assert_eq!(ack.offsets.history, offset + 50);
    let chunk = content(999);
    api.put_file(&path, "after.bin", &mut &chunk[..], chunk.len() as u64).unwrap();
    assert_eq!(api.list_files(&path).unwrap().len(), stored_files + 1);
    assert_eq!(integrity(&fs.dir.join("cairn.db")), "ok");
    drop(server);
}
