//! A W&B offline run log (`run-*.wandb`) as `cairn import wandb` reads it: LevelDB's record log
//! with W&B's header, each record a protobuf message.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(mut records) = cairn_import::leveldb::Records::new(data) {
        for _ in records.by_ref() {}
        let _ = records.damage();
    }
    let dir = tempfile::tempdir().expect("a temporary directory");
    let log = dir.path().join("run-fuzz.wandb");
    std::fs::write(&log, data).expect("the log");
    let _ = cairn_import::wandb::read_run(&log);
});
