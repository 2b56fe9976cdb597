//! Chunks: the storage unit of a series. A chunk holds up to [`TARGET_CHUNK_POINTS`] points of one
//! key (steps and values), compressed with pco, plus aggregate statistics kept beside it so that a
//! bucketed query over a large range reads statistics instead of points.
//!
//! Layout of the encoded bytes:
//! `flags: u8 | count: varint | [steps: varint len | pco(i64)] | values`
//! where `flags & 0b11` is the value kind (0 f64, 1 i64, 2 mixed), `flags & 0b100` marks dense steps
//! (`start, start+1, ...`, not stored), and values are pco(f64), pco(i64) or wire-encoded values.

use cairn_types::error::{CodedError, ErrorCode};
use cairn_types::value::Value;
use cairn_types::wire::{Reader, put_value, put_varint};

/// Points per chunk once a chunk is full. Smaller tail chunks are merged until they reach it.
pub const TARGET_CHUNK_POINTS: usize = 8192;

const KIND_F64: u8 = 0;
const KIND_I64: u8 = 1;
const KIND_MIXED: u8 = 2;
const DENSE_STEPS: u8 = 0b100;

/// Aggregates of a chunk, or of a bucket. Non-numeric values count in `count` only; NaN counts in
/// `nan_count` and is left out of min, max, sum and last.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stats {
    pub start_step: i64,
    pub end_step: i64,
    pub count: u64,
    pub num_count: u64,
    pub nan_count: u64,
    pub min: f64,
    pub max: f64,
    pub sum: f64,
    /// The last non-NaN number, or NaN when there is none.
    pub last: f64,
}

impl Stats {
    pub fn empty() -> Stats {
        Stats { start_step: i64::MAX, end_step: i64::MIN, count: 0, num_count: 0, nan_count: 0, min: f64::INFINITY, max: f64::NEG_INFINITY, sum: 0.0, last: f64::NAN }
    }

    #[inline]
    pub fn push_number(&mut self, step: i64, v: f64) {
        self.start_step = self.start_step.min(step);
        self.end_step = self.end_step.max(step);
        self.count += 1;
        if v.is_nan() {
            self.nan_count += 1;
        } else {
            self.num_count += 1;
            self.min = self.min.min(v);
            self.max = self.max.max(v);
            self.sum += v;
            self.last = v;
        }
    }

    pub fn push_value(&mut self, step: i64, value: &Value) {
        match value {
            Value::Int(_) | Value::Float(_) => self.push_number(step, value.as_f64().expect("numeric")),
            _ => {
                self.start_step = self.start_step.min(step);
                self.end_step = self.end_step.max(step);
                self.count += 1;
            }
        }
    }

    /// Merges `other`; `last` comes from whichever covers the later steps, so the order of
    /// merging does not matter.
    pub fn merge(&mut self, other: &Stats) {
        if !other.last.is_nan() && (self.last.is_nan() || other.end_step >= self.end_step) {
            self.last = other.last;
        }
        self.start_step = self.start_step.min(other.start_step);
        self.end_step = self.end_step.max(other.end_step);
        self.count += other.count;
        self.num_count += other.num_count;
        self.nan_count += other.nan_count;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        self.sum += other.sum;
    }

    /// Min and max as stored: `None` when there is no non-NaN number.
    pub fn min_max(&self) -> Option<(f64, f64)> {
        (self.num_count > 0).then_some((self.min, self.max))
    }
}

/// The points of a chunk.
#[derive(Debug, Clone, PartialEq)]
pub struct Points {
    pub steps: Vec<i64>,
    pub values: Vec<Value>,
}

impl Points {
    pub fn stats(&self) -> Stats {
        let mut stats = Stats::empty();
        for (step, value) in self.steps.iter().zip(&self.values) {
            stats.push_value(*step, value);
        }
        stats
    }
}

fn corrupt(what: &str) -> CodedError {
    CodedError::new(ErrorCode::Internal, format!("stored chunk is corrupt: {what}"))
}

fn pco_compress<T: pco::data_types::Number>(values: &[T]) -> Vec<u8> {
    pco::standalone::simple_compress(values, &pco::ChunkConfig::default().with_compression_level(4)).expect("pco compresses any numbers")
}

fn pco_decompress<T: pco::data_types::Number>(bytes: &[u8]) -> Result<Vec<T>, CodedError> {
    pco::standalone::simple_decompress(bytes).map_err(|e| corrupt(&e.to_string()))
}

/// Encodes points (steps strictly increasing).
pub fn encode(steps: &[i64], values: &[Value]) -> Vec<u8> {
    debug_assert_eq!(steps.len(), values.len());
    debug_assert!(!steps.is_empty());
    let dense = steps.windows(2).all(|w| w[1] == w[0] + 1);
    let kind = if values.iter().all(|v| matches!(v, Value::Float(_))) {
        KIND_F64
    } else if values.iter().all(|v| matches!(v, Value::Int(_))) {
        KIND_I64
    } else {
        KIND_MIXED
    };
    let mut out = Vec::with_capacity(16 + values.len());
    out.push(kind | if dense { DENSE_STEPS } else { 0 });
    put_varint(&mut out, steps.len() as u64);
    if !dense {
        let compressed = pco_compress(steps);
        put_varint(&mut out, compressed.len() as u64);
        out.extend_from_slice(&compressed);
    }
    match kind {
        KIND_F64 => {
            let floats: Vec<f64> = values.iter().map(|v| v.as_f64().expect("float")).collect();
            out.extend_from_slice(&pco_compress(&floats));
        }
        KIND_I64 => {
            let ints: Vec<i64> = values.iter().map(|v| if let Value::Int(i) = v { *i } else { 0 }).collect();
            out.extend_from_slice(&pco_compress(&ints));
        }
        _ => {
            for value in values {
                put_value(&mut out, value);
            }
        }
    }
    out
}

struct Header<'a> {
    kind: u8,
    count: usize,
    steps: Option<&'a [u8]>,
    values: &'a [u8],
}

fn header(bytes: &[u8]) -> Result<Header<'_>, CodedError> {
    let mut r = Reader::new(bytes);
    let flags = r.u8().map_err(|_| corrupt("empty"))?;
    let count = r.varint().map_err(|_| corrupt("count"))? as usize;
    let steps = if flags & DENSE_STEPS == 0 {
        let n = r.varint().map_err(|_| corrupt("steps length"))? as usize;
        Some(r.bytes(n).map_err(|_| corrupt("steps"))?)
    } else {
        None
    };
    let values = &bytes[r.position()..];
    // The count comes from the stored bytes: it is checked against them before anything is
    // allocated for it (a damaged chunk must not make the server allocate terabytes).
    if flags & 0b11 == KIND_MIXED && count > values.len() {
        return Err(corrupt("count larger than the values"));
    }
    Ok(Header { kind: flags & 0b11, count, steps, values })
}

/// The chunk's steps; decoded once its values have confirmed its count.
fn steps_of(h: &Header<'_>, start_step: i64) -> Result<Steps, CodedError> {
    match h.steps {
        None => {
            i64::try_from(h.count).ok().and_then(|n| start_step.checked_add(n)).ok_or_else(|| corrupt("steps past the largest step"))?;
            Ok(Steps::Dense { start: start_step, len: h.count })
        }
        Some(bytes) => {
            let steps: Vec<i64> = pco_decompress(bytes)?;
            if steps.len() != h.count {
                return Err(corrupt("step count"));
            }
            Ok(Steps::Sparse(steps))
        }
    }
}

/// Decodes all points of a chunk.
pub fn decode(bytes: &[u8], start_step: i64) -> Result<Points, CodedError> {
    let h = header(bytes)?;
    let values: Vec<Value> = match h.kind {
        KIND_F64 => pco_decompress::<f64>(h.values)?.into_iter().map(Value::Float).collect(),
        KIND_I64 => pco_decompress::<i64>(h.values)?.into_iter().map(Value::Int).collect(),
        KIND_MIXED => {
            let mut r = Reader::new(h.values);
            let mut values = Vec::with_capacity(h.count);
            for _ in 0..h.count {
                values.push(r.value().map_err(|_| corrupt("value"))?);
            }
            values
        }
        _ => return Err(corrupt("kind")),
    };
    if values.len() != h.count {
        return Err(corrupt("value count"));
    }
    let steps = steps_of(&h, start_step)?.into_vec();
    Ok(Points { steps, values })
}

/// The steps of a decoded chunk: `start, start+1, ...` when dense.
#[derive(Debug, Clone, PartialEq)]
pub enum Steps {
    Dense { start: i64, len: usize },
    Sparse(Vec<i64>),
}

impl Steps {
    pub fn len(&self) -> usize {
        match self {
            Steps::Dense { len, .. } => *len,
            Steps::Sparse(steps) => steps.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    #[inline]
    pub fn get(&self, i: usize) -> i64 {
        match self {
            Steps::Dense { start, .. } => start + i as i64,
            Steps::Sparse(steps) => steps[i],
        }
    }

    pub fn to_vec(&self) -> Vec<i64> {
        (0..self.len()).map(|i| self.get(i)).collect()
    }

    pub fn into_vec(self) -> Vec<i64> {
        match self {
            Steps::Sparse(steps) => steps,
            dense => dense.to_vec(),
        }
    }
}

/// Values of a decoded chunk, in their stored form.
#[derive(Debug, Clone, PartialEq)]
pub enum ChunkValues {
    F64(Vec<f64>),
    I64(Vec<i64>),
    Mixed(Vec<Value>),
}

/// The numeric points of a chunk; non-numeric values are left out (the steps are then sparse).
#[derive(Debug, Clone, PartialEq)]
pub struct NumericChunk {
    pub steps: Steps,
    pub values: Vec<f64>,
}

/// Decodes a chunk keeping floats and ints in plain arrays.
pub fn decode_typed(bytes: &[u8], start_step: i64) -> Result<(Steps, ChunkValues), CodedError> {
    let h = header(bytes)?;
    let values = match h.kind {
        KIND_F64 => ChunkValues::F64(pco_decompress(h.values)?),
        KIND_I64 => ChunkValues::I64(pco_decompress(h.values)?),
        KIND_MIXED => ChunkValues::Mixed(decode(bytes, start_step)?.values),
        _ => return Err(corrupt("kind")),
    };
    let n = match &values {
        ChunkValues::F64(v) => v.len(),
        ChunkValues::I64(v) => v.len(),
        ChunkValues::Mixed(v) => v.len(),
    };
    if n != h.count {
        return Err(corrupt("value count"));
    }
    Ok((steps_of(&h, start_step)?, values))
}

pub fn decode_numeric(bytes: &[u8], start_step: i64) -> Result<NumericChunk, CodedError> {
    let (steps, values) = decode_typed(bytes, start_step)?;
    Ok(match values {
        ChunkValues::F64(values) => NumericChunk { steps, values },
        ChunkValues::I64(ints) => NumericChunk { steps, values: ints.into_iter().map(|i| i as f64).collect() },
        ChunkValues::Mixed(mixed) => {
            let mut kept_steps = Vec::with_capacity(mixed.len());
            let mut values = Vec::with_capacity(mixed.len());
            for (i, value) in mixed.iter().enumerate() {
                if let Value::Int(_) | Value::Float(_) = value {
                    kept_steps.push(steps.get(i));
                    values.push(value.as_f64().expect("numeric"));
                }
            }
            NumericChunk { steps: Steps::Sparse(kept_steps), values }
        }
    })
}

/// Splits points into chunks of at most [`TARGET_CHUNK_POINTS`], each with its stats and bytes.
pub fn split_encode(points: &Points) -> Vec<(Stats, Vec<u8>)> {
    points
        .steps
        .chunks(TARGET_CHUNK_POINTS)
        .zip(points.values.chunks(TARGET_CHUNK_POINTS))
        .map(|(steps, values)| {
            let mut stats = Stats::empty();
            for (step, value) in steps.iter().zip(values) {
                stats.push_value(*step, value);
            }
            (stats, encode(steps, values))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the chunk fuzz target: a damaged header's count made the decoder allocate the
    /// steps (terabytes) before it looked at the values.
    #[test]
    fn a_damaged_count_is_an_error_not_an_allocation() {
        let found = [0xff, 0xff, 0xff, 0xd7, 0xe6, 0x0a];
        assert!(decode(&found, 0x0200_00ff_ffff_ff0b).is_err());
        assert!(decode_typed(&found, 0).is_err());
        for kind in [KIND_F64, KIND_I64, KIND_MIXED] {
            let mut bytes = vec![kind | DENSE_STEPS];
            put_varint(&mut bytes, u64::MAX >> 2);
            bytes.extend_from_slice(&encode(&[0, 1], &[Value::Float(1.0), Value::Float(2.0)])[2..]);
            assert!(decode(&bytes, 0).is_err(), "kind {kind}");
            assert!(decode_numeric(&bytes, 0).is_err(), "kind {kind}");
        }
        // Dense steps that would pass the largest step.
        let bytes = encode(&[0, 1], &[Value::Float(1.0), Value::Float(2.0)]);
        assert!(decode(&bytes, i64::MAX).is_err());
        assert!(decode_typed(&bytes, i64::MAX - 1).is_err());
        assert_eq!(decode(&bytes, i64::MAX - 2).unwrap().steps, [i64::MAX - 2, i64::MAX - 1]);
    }

    fn round_trip(steps: Vec<i64>, values: Vec<Value>) {
        let bytes = encode(&steps, &values);
        let back = decode(&bytes, steps[0]).unwrap();
        assert_eq!(back.steps, steps);
        assert_eq!(back.values.len(), values.len());
        for (a, b) in back.values.iter().zip(&values) {
            match (a, b) {
                (Value::Float(x), Value::Float(y)) => assert!(x.to_bits() == y.to_bits(), "{x} != {y}"),
                _ => assert_eq!(a, b),
            }
        }
    }

    #[test]
    fn kinds_round_trip_exactly() {
        let dense: Vec<i64> = (100..200).collect();
        let sparse: Vec<i64> = (0..100).map(|i| i * i).collect();
        let floats: Vec<Value> = (0..100).map(|i| Value::Float(i as f64 * 1e-3 + 0.1)).collect();
        round_trip(dense.clone(), floats.clone());
        round_trip(sparse.clone(), floats);
        let specials = vec![Value::Float(f64::NAN), Value::Float(f64::INFINITY), Value::Float(-0.0), Value::Float(f64::MIN_POSITIVE)];
        round_trip(vec![1, 2, 3, 9], specials);
        round_trip(dense.clone(), (0..100).map(|i| Value::Int(i64::MAX - i)).collect());
        let mut mixed: Vec<Value> = (0..100).map(Value::Int).collect();
        mixed[5] = Value::Float(0.5);
        mixed[6] = Value::from("text");
        mixed[7] = Value::Null;
        mixed[8] = Value::Map(cairn_types::map! {"a" => 1});
        round_trip(sparse, mixed);
        round_trip(vec![7], vec![Value::Float(1.0)]);
    }

    #[test]
    fn numeric_decode_and_stats() {
        let steps = vec![0, 1, 2, 3, 4];
        let values = vec![Value::Float(1.0), Value::Float(f64::NAN), Value::from("x"), Value::Int(-4), Value::Float(9.0)];
        let bytes = encode(&steps, &values);
        let chunk = decode_numeric(&bytes, 0).unwrap();
        assert_eq!(chunk.steps.to_vec(), vec![0, 1, 3, 4]);
        assert_eq!(chunk.values[0], 1.0);
        assert!(chunk.values[1].is_nan());
        let dense = decode_numeric(&encode(&[5, 6], &[Value::Float(1.0), Value::Float(2.0)]), 5).unwrap();
        assert_eq!(dense.steps, Steps::Dense { start: 5, len: 2 });
        let stats = Points { steps, values }.stats();
        assert_eq!((stats.count, stats.num_count, stats.nan_count), (5, 3, 1));
        assert_eq!((stats.min, stats.max, stats.sum, stats.last), (-4.0, 9.0, 6.0, 9.0));
    }

    #[test]
    fn corrupt_chunks_are_errors() {
        let bytes = encode(&[0, 1, 2], &[Value::Float(1.0), Value::Float(2.0), Value::Float(3.0)]);
        for cut in 0..bytes.len() {
            let _ = decode(&bytes[..cut], 0);
        }
        assert!(decode(&[], 0).is_err());
    }

    #[test]
    fn ramp_compresses_far_below_eight_bytes() {
        let steps: Vec<i64> = (0..8192).collect();
        let values: Vec<Value> = steps.iter().map(|&i| Value::Float(i as f64 * 1e-3)).collect();
        assert!(encode(&steps, &values).len() < 8192);
    }
}

/// Property tests: any points round-trip through a chunk, with the same stats.
#[cfg(test)]
mod props {
    use proptest::prelude::*;

    use super::*;

    /// Strictly increasing steps: dense runs and gaps.
    fn steps(len: usize) -> impl Strategy<Value = Vec<i64>> {
        (any::<i32>(), prop::collection::vec(prop_oneof![4 => Just(1i64), 1 => 2i64..1_000_000], len)).prop_map(|(start, gaps)| {
            let mut step = i64::from(start).abs();
            gaps.into_iter()
                .map(|g| {
                    let s = step;
                    step += g;
                    s
                })
                .collect()
        })
    }

    fn value() -> impl Strategy<Value = Value> {
        prop_oneof![
            any::<f64>().prop_map(Value::Float),
            any::<i64>().prop_map(Value::Int),
            Just(Value::Float(f64::NAN)),
            Just(Value::Float(f64::INFINITY)),
            "[a-z]{0,8}".prop_map(Value::from),
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
        ]
    }

    /// All floats, all ints, or mixed: the three encodings.
    fn points() -> impl Strategy<Value = (Vec<i64>, Vec<Value>)> {
        (1usize..400, 0u8..3).prop_flat_map(|(len, kind)| {
            let values = match kind {
                0 => prop::collection::vec(any::<f64>().prop_map(Value::Float), len).boxed(),
                1 => prop::collection::vec(any::<i64>().prop_map(Value::Int), len).boxed(),
                _ => prop::collection::vec(value(), len).boxed(),
            };
            (steps(len), values)
        })
    }

    fn same(a: &Value, b: &Value) -> bool {
        match (a, b) {
            (Value::Float(x), Value::Float(y)) => x.to_bits() == y.to_bits(),
            _ => a == b,
        }
    }

    fn same_stats(a: &Stats, b: &Stats) -> bool {
        let f = |x: f64, y: f64| x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan());
        (a.start_step, a.end_step, a.count, a.num_count, a.nan_count) == (b.start_step, b.end_step, b.count, b.num_count, b.nan_count)
            && f(a.min, b.min)
            && f(a.max, b.max)
            && f(a.sum, b.sum)
            && f(a.last, b.last)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

        #[test]
        fn chunks_round_trip_with_their_stats((steps, values) in points()) {
            let bytes = encode(&steps, &values);
            let back = decode(&bytes, steps[0]).unwrap();
            prop_assert_eq!(&back.steps, &steps);
            prop_assert!(back.values.iter().zip(&values).all(|(a, b)| same(a, b)));
            let original = Points { steps: steps.clone(), values: values.clone() };
            prop_assert!(same_stats(&back.stats(), &original.stats()));
            // A cut chunk is an error, never a panic or other points.
            for cut in [0, bytes.len() / 3, bytes.len() / 2, bytes.len() - 1] {
                if let Ok(p) = decode(&bytes[..cut], steps[0]) {
                    prop_assert!(p.steps.len() != steps.len() || p.values.iter().zip(&values).any(|(a, b)| !same(a, b)) || cut == bytes.len());
                }
            }
        }
    }
}
