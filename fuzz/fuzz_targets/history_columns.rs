//! Binary history columns (`application/x-cairn-columns`), what the UI and `Api` read.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(columns) = cairn_types::wire::decode_columns(data) {
        for column in columns.columns {
            for i in 0..column.data.len() {
                let _ = column.data.get(i);
            }
            let _ = column.data.into_values();
        }
    }
});
