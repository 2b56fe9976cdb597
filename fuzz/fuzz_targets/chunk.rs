//! A stored chunk of a series (pco), as the store reads it back: the first 8 bytes are the
//! chunk's start step, the rest its bytes. Every decoder agrees on how many points it holds.
#![no_main]
use cairn_store::chunk;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((start, bytes)) = data.split_first_chunk::<8>() else { return };
    let start = i64::from_le_bytes(*start);
    let points = chunk::decode(bytes, start);
    if let Ok(points) = &points {
        assert_eq!(points.steps.len(), points.values.len());
        let _ = points.stats();
    }
    if let Ok((steps, values)) = chunk::decode_typed(bytes, start) {
        let n = match &values {
            chunk::ChunkValues::F64(v) => v.len(),
            chunk::ChunkValues::I64(v) => v.len(),
            chunk::ChunkValues::Mixed(v) => v.len(),
        };
        assert_eq!(steps.len(), n);
        let _ = steps.to_vec();
        assert_eq!(points.as_ref().map(|p| p.steps.len()).ok(), Some(n), "decode and decode_typed disagree");
    }
    if let Ok(numeric) = chunk::decode_numeric(bytes, start) {
        assert_eq!(numeric.steps.len(), numeric.values.len());
    }
});
