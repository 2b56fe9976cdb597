//! A run directory's write-ahead log as a crash, a full disk or a bad sector leaves it: the
//! bytes are segment 0 (or, when the first byte is odd, segments 0 and 1 cut at the second and
//! third). The reader stops at the first record that does not check out, says whether data
//! follows it, and every batch `sync` builds from what it read decodes: nothing sent is garbage.
#![no_main]
use cairn_client::upload::{MAX_BATCH_BYTES, Sender};
use cairn_client::wal;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let wal_dir = dir.path().join("wal");
    std::fs::create_dir(&wal_dir).expect("wal/");
    let (first, second) = match data {
        [flag, a, b, rest @ ..] if flag % 2 == 1 => {
            let cut = (u16::from_le_bytes([*a, *b]) as usize).min(rest.len());
            (&rest[..cut], Some(&rest[cut..]))
        }
        _ => (data, None),
    };
    std::fs::write(wal::segment_path(&wal_dir, 0), first).expect("segment 0");
    if let Some(second) = second {
        std::fs::write(wal::segment_path(&wal_dir, 1), second).expect("segment 1");
    }
    let end = wal::scan_end(&wal_dir).expect("scan");
    let _ = wal::damage_after(&wal_dir, end).expect("damage_after");
    let mut sender = Sender::new(&wal_dir, 0, Default::default());
    let mut batches = 0;
    while let Some(batch) = sender.next_batch(end, true, MAX_BATCH_BYTES).expect("a batch") {
        if let Err(e) = cairn_types::wire::decode_batch(&batch.body) {
            panic!("sync would send a batch the server cannot read: {e}");
        }
        assert!(batch.next > sender.acked, "no progress");
        sender.acked = batch.next;
        batches += 1;
        assert!(batches < 10_000);
    }
});
