//! Bucketed series queries, for every backend: N equal-width buckets over an x-range, each with
//! min, max, mean, last and count. Nothing is sampled: min and max bound every point, so a one-step
//! spike shows at any zoom.
//!
//! By `_step`, a chunk that falls inside one bucket contributes its stored statistics without being
//! decoded, so a query over a long series reads statistics, not points. Other x-axes (`_runtime`,
//! `_timestamp`, a logged key) join the x and y series by step and bucket the pairs.

use cairn_types::api::Buckets;

use crate::Result;
use crate::chunk::{Stats, Steps, decode_numeric};

/// Where the bucketing reads chunks from; each backend implements it.
pub trait ChunkSource {
    /// Stats of the chunks of `key` that overlap `[lo_step, hi_step]`, in step order.
    fn chunk_stats(&mut self, key: i64, lo_step: i64, hi_step: i64) -> Result<Vec<Stats>>;
    /// The encoded bytes of the chunk of `key` that starts at `start_step`.
    fn chunk_data(&mut self, key: i64, start_step: i64) -> Result<Vec<u8>>;
}

/// Chunks to decode from which a query uses two threads.
const PARALLEL_CHUNKS: usize = 16;

/// Equal-width buckets over `[lo, hi]`.
#[derive(Debug, Clone, Copy)]
pub struct Grid {
    pub lo: f64,
    pub hi: f64,
    pub n: usize,
    width: f64,
}

impl Grid {
    pub fn new(lo: f64, hi: f64, n: usize) -> Grid {
        let n = n.max(1);
        Grid { lo, hi, n, width: (hi - lo) / n as f64 }
    }

    /// The first integer x whose bucket is after `bucket` (approximate where x is too large for
    /// an f64 to hold every integer; callers must not depend on it being exact).
    fn next_boundary(&self, bucket: usize) -> i64 {
        if bucket + 1 >= self.n || self.width <= 0.0 || !self.width.is_finite() {
            return i64::MAX;
        }
        let estimate = (self.lo + (bucket + 1) as f64 * self.width).ceil();
        if estimate.is_nan() || estimate >= 9.2e18 {
            return i64::MAX;
        }
        if estimate <= -9.2e18 {
            return i64::MIN;
        }
        let mut x = estimate as i64;
        // Floating point may put the estimate one off either way: settle it with `index`, in a
        // bounded number of steps (far from zero, consecutive integers share one f64).
        for _ in 0..4 {
            if self.index(x as f64) > bucket {
                break;
            }
            x = x.saturating_add(1);
        }
        for _ in 0..4 {
            if x == i64::MIN || self.index((x - 1) as f64) <= bucket {
                break;
            }
            x -= 1;
        }
        x
    }

    #[inline]
    pub fn contains(&self, x: f64) -> bool {
        x >= self.lo && x <= self.hi
    }

    #[inline]
    pub fn index(&self, x: f64) -> usize {
        if self.width <= 0.0 || !self.width.is_finite() {
            return 0;
        }
        let i = ((x - self.lo) / self.width) as usize;
        i.min(self.n - 1)
    }
}

#[derive(Debug, Clone, Copy)]
struct Acc {
    stats: Stats,
    x_min: f64,
    x_max: f64,
}

/// Accumulates points and chunk statistics into buckets.
pub struct Bucketer {
    grid: Grid,
    accs: Vec<Option<Acc>>,
}

impl Bucketer {
    pub fn new(grid: Grid) -> Bucketer {
        Bucketer { grid, accs: vec![None; grid.n] }
    }

    #[inline]
    pub fn push(&mut self, x: f64, step: i64, y: f64) {
        if !self.grid.contains(x) {
            return;
        }
        let acc = self.accs[self.grid.index(x)].get_or_insert(Acc { stats: Stats::empty(), x_min: x, x_max: x });
        acc.stats.push_number(step, y);
        acc.x_min = acc.x_min.min(x);
        acc.x_max = acc.x_max.max(x);
    }

    /// Adds consecutive steps `start, start+1, ...` with their values (x being the step): each
    /// bucket's slice is reduced in one tight loop, without a division per point.
    pub fn push_dense(&mut self, start: i64, values: &[f64]) {
        let lo = (self.grid.lo.ceil() as i64).max(start);
        let hi = (self.grid.hi.floor() as i64).min(start + values.len() as i64 - 1);
        if self.grid.width < 8.0 {
            // A few points per bucket: finding each bucket's end costs more than the points.
            for step in lo..=hi {
                let y = values[(step - start) as usize];
                let x = step as f64;
                let acc = self.accs[self.grid.index(x)].get_or_insert(Acc { stats: Stats::empty(), x_min: x, x_max: x });
                acc.stats.push_number(step, y);
                acc.x_min = acc.x_min.min(x);
                acc.x_max = acc.x_max.max(x);
            }
            return;
        }
        let mut step = lo;
        while step <= hi {
            let bucket = self.grid.index(step as f64);
            // Always at least one step forward, whatever the floating point says.
            let end = self.grid.next_boundary(bucket).clamp(step + 1, hi + 1);
            let slice = &values[(step - start) as usize..(end - start) as usize];
            let mut s = reduce(slice);
            s.start_step = step;
            s.end_step = end - 1;
            let acc = self.accs[bucket].get_or_insert(Acc { stats: Stats::empty(), x_min: step as f64, x_max: step as f64 });
            acc.stats.merge(&s);
            acc.x_min = acc.x_min.min(step as f64);
            acc.x_max = acc.x_max.max((end - 1) as f64);
            step = end;
        }
    }

    /// Adds a whole chunk that lies in one bucket (x being the step).
    pub fn push_stats(&mut self, stats: &Stats) {
        let x_min = stats.start_step as f64;
        let acc = self.accs[self.grid.index(x_min)].get_or_insert(Acc { stats: Stats::empty(), x_min, x_max: x_min });
        acc.stats.merge(stats);
        acc.x_min = acc.x_min.min(x_min);
        acc.x_max = acc.x_max.max(stats.end_step as f64);
    }

    /// Adds another bucketer's buckets (same grid).
    pub fn absorb(&mut self, other: Bucketer) {
        for (mine, theirs) in self.accs.iter_mut().zip(other.accs) {
            let Some(theirs) = theirs else { continue };
            match mine {
                Some(acc) => {
                    acc.stats.merge(&theirs.stats);
                    acc.x_min = acc.x_min.min(theirs.x_min);
                    acc.x_max = acc.x_max.max(theirs.x_max);
                }
                None => *mine = Some(theirs),
            }
        }
    }

    fn push_chunk(&mut self, stats: &Stats, bytes: &[u8]) -> Result<()> {
        let chunk = decode_numeric(bytes, stats.start_step)?;
        match chunk.steps {
            Steps::Dense { start, .. } => self.push_dense(start, &chunk.values),
            Steps::Sparse(steps) => {
                for (&step, &y) in steps.iter().zip(&chunk.values) {
                    self.push(step as f64, step, y);
                }
            }
        }
        Ok(())
    }

    pub fn finish(self) -> Buckets {
        let mut out = Buckets::default();
        for (index, acc) in self.accs.into_iter().enumerate() {
            let Some(acc) = acc else { continue };
            let s = &acc.stats;
            let count = s.num_count + s.nan_count;
            if count == 0 {
                continue;
            }
            out.index.push(index as u32);
            out.x.push((acc.x_min + acc.x_max) / 2.0);
            out.x_min.push(acc.x_min);
            out.x_max.push(acc.x_max);
            let (min, max) = s.min_max().unwrap_or((f64::NAN, f64::NAN));
            out.min.push(min);
            out.max.push(max);
            out.mean.push(if s.num_count > 0 { s.sum / s.num_count as f64 } else { f64::NAN });
            out.last.push(s.last);
            out.count.push(count);
        }
        out
    }
}

/// Min, max, sum and counts of a slice, branch-free in 8 lanes so that it vectorizes. NaN fails
/// every comparison, so it drops out of min and max by itself.
pub fn reduce(values: &[f64]) -> Stats {
    const LANES: usize = 8;
    let mut mins = [f64::INFINITY; LANES];
    let mut maxs = [f64::NEG_INFINITY; LANES];
    let mut sums = [0.0f64; LANES];
    let mut nans = [0u64; LANES];
    let chunks = values.chunks_exact(LANES);
    let rest = chunks.remainder();
    for chunk in chunks {
        for j in 0..LANES {
            let v = chunk[j];
            let nan = v.is_nan();
            mins[j] = if v < mins[j] { v } else { mins[j] };
            maxs[j] = if v > maxs[j] { v } else { maxs[j] };
            sums[j] += if nan { 0.0 } else { v };
            nans[j] += nan as u64;
        }
    }
    for (j, &v) in rest.iter().enumerate() {
        let nan = v.is_nan();
        mins[j] = if v < mins[j] { v } else { mins[j] };
        maxs[j] = if v > maxs[j] { v } else { maxs[j] };
        sums[j] += if nan { 0.0 } else { v };
        nans[j] += nan as u64;
    }
    let mut stats = Stats::empty();
    stats.count = values.len() as u64;
    stats.nan_count = nans.iter().sum();
    stats.num_count = stats.count - stats.nan_count;
    stats.min = mins.iter().cloned().fold(f64::INFINITY, f64::min);
    stats.max = maxs.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    stats.sum = sums.iter().sum();
    stats.last = values.iter().rev().find(|v| !v.is_nan()).copied().unwrap_or(f64::NAN);
    stats
}

/// Buckets `key` by `_step` over `grid` (whose bounds are steps).
pub fn step_buckets(source: &mut dyn ChunkSource, key: i64, grid: Grid) -> Result<Buckets> {
    let lo = grid.lo.ceil() as i64;
    let hi = grid.hi.floor() as i64;
    let mut bucketer = Bucketer::new(grid);
    if lo > hi {
        return Ok(bucketer.finish());
    }
    let mut to_decode = Vec::new();
    for stats in source.chunk_stats(key, lo, hi)? {
        let inside = stats.start_step >= lo && stats.end_step <= hi;
        if inside && grid.index(stats.start_step as f64) == grid.index(stats.end_step as f64) {
            if stats.num_count + stats.nan_count > 0 {
                bucketer.push_stats(&stats);
            }
            continue;
        }
        to_decode.push((stats, source.chunk_data(key, stats.start_step)?));
    }
    // Decoding dominates a query over many chunks: use a second core for half of them.
    if to_decode.len() >= PARALLEL_CHUNKS {
        let (first, second) = to_decode.split_at(to_decode.len() / 2);
        let other = std::thread::scope(|scope| -> Result<Bucketer> {
            let helper = scope.spawn(|| -> Result<Bucketer> {
                let mut other = Bucketer::new(grid);
                for (stats, bytes) in second {
                    other.push_chunk(stats, bytes)?;
                }
                Ok(other)
            });
            for (stats, bytes) in first {
                bucketer.push_chunk(stats, bytes)?;
            }
            helper.join().unwrap_or_else(|_| Err(cairn_types::error::CodedError::new(cairn_types::error::ErrorCode::Internal, "a bucketing thread panicked")))
        })?;
        bucketer.absorb(other);
    } else {
        for (stats, bytes) in &to_decode {
            bucketer.push_chunk(stats, bytes)?;
        }
    }
    Ok(bucketer.finish())
}

/// Numeric points of one key, in step order.
#[derive(Debug, Clone, Default)]
pub struct NumericSeries {
    pub steps: Vec<i64>,
    pub values: Vec<f64>,
}

impl NumericSeries {
    /// Reads the numeric points of `key` over `[lo_step, hi_step]`.
    pub fn load(source: &mut dyn ChunkSource, key: i64, lo_step: i64, hi_step: i64) -> Result<NumericSeries> {
        let mut out = NumericSeries::default();
        for stats in source.chunk_stats(key, lo_step, hi_step)? {
            let chunk = decode_numeric(&source.chunk_data(key, stats.start_step)?, stats.start_step)?;
            for (i, value) in chunk.values.into_iter().enumerate() {
                let step = chunk.steps.get(i);
                if step >= lo_step && step <= hi_step {
                    out.steps.push(step);
                    out.values.push(value);
                }
            }
        }
        Ok(out)
    }

    pub fn scale(mut self, factor: f64) -> NumericSeries {
        for v in &mut self.values {
            *v *= factor;
        }
        self
    }
}

/// Joins x and y by step: the `(x, step, y)` triples where both have a point.
pub fn join(x: &NumericSeries, y: &NumericSeries) -> Vec<(f64, i64, f64)> {
    let mut out = Vec::with_capacity(y.steps.len().min(x.steps.len()));
    let (mut i, mut j) = (0, 0);
    while i < x.steps.len() && j < y.steps.len() {
        match x.steps[i].cmp(&y.steps[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                out.push((x.values[i], y.steps[j], y.values[j]));
                i += 1;
                j += 1;
            }
        }
    }
    out
}

/// The finite x-range of joined points.
pub fn x_range(points: &[(f64, i64, f64)]) -> Option<(f64, f64)> {
    let mut range: Option<(f64, f64)> = None;
    for &(x, _, _) in points {
        if x.is_finite() {
            range = Some(match range {
                None => (x, x),
                Some((lo, hi)) => (lo.min(x), hi.max(x)),
            });
        }
    }
    range
}

pub fn xy_buckets(points: &[(f64, i64, f64)], grid: Grid) -> Buckets {
    let mut bucketer = Bucketer::new(grid);
    for &(x, step, y) in points {
        bucketer.push(x, step, y);
    }
    bucketer.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk::{Points, split_encode};
    use cairn_types::value::Value;

    #[test]
    fn extreme_ranges_end_and_keep_every_point() {
        for (lo, hi) in [(-1e300, 1e300), (-9.3e18, 9.3e18), (1e18, 1e18 + 4096.0), (0.0, 1e-9), (5.0, 5.0)] {
            let mut b = Bucketer::new(Grid::new(lo, hi, 1000));
            let start = if lo > 1e17 { lo as i64 } else { 0 };
            b.push_dense(start, &vec![1.0; 5000]);
            let (first, last) = (lo.ceil() as i64, hi.floor() as i64);
            let inside = (0..5000i64).filter(|i| (first..=last).contains(&(start + i))).count() as u64;
            let counted: u64 = b.accs.iter().flatten().map(|a| a.stats.count).sum();
            assert_eq!(counted, inside, "{lo}..{hi}");
        }
    }

    struct MemSource {
        chunks: Vec<(Stats, Vec<u8>)>,
        decoded: usize,
    }

    impl ChunkSource for MemSource {
        fn chunk_stats(&mut self, _key: i64, lo: i64, hi: i64) -> Result<Vec<Stats>> {
            Ok(self.chunks.iter().map(|c| c.0).filter(|s| s.end_step >= lo && s.start_step <= hi).collect())
        }
        fn chunk_data(&mut self, _key: i64, start: i64) -> Result<Vec<u8>> {
            self.decoded += 1;
            Ok(self.chunks.iter().find(|c| c.0.start_step == start).unwrap().1.clone())
        }
    }

    fn source(n: i64, spike_at: i64) -> MemSource {
        let steps: Vec<i64> = (0..n).collect();
        let values = steps.iter().map(|&s| Value::Float(if s == spike_at { 1e6 } else { (s % 7) as f64 })).collect();
        MemSource { chunks: split_encode(&Points { steps, values }), decoded: 0 }
    }

    #[test]
    fn a_single_spike_survives_any_bucketing() {
        let n = 200_000;
        for buckets in [1, 10, 1000, 7919] {
            let mut src = source(n, 123_457);
            let b = step_buckets(&mut src, 0, Grid::new(0.0, (n - 1) as f64, buckets)).unwrap();
            assert!(b.max.contains(&1e6), "{buckets} buckets lost the spike");
            assert_eq!(b.count.iter().sum::<u64>(), n as u64);
        }
    }

    #[test]
    fn wide_buckets_read_stats_not_points() {
        let mut src = source(8192 * 20, -1);
        let b = step_buckets(&mut src, 0, Grid::new(0.0, (8192 * 20 - 1) as f64, 4)).unwrap();
        assert_eq!(b.len(), 4);
        // Only the chunks that straddle a bucket boundary are decoded.
        assert!(src.decoded <= 4, "decoded {}", src.decoded);
        assert_eq!(b.min[0], 0.0);
        assert_eq!(b.max[0], 6.0);
    }

    #[test]
    fn zoom_rebuckets_exactly() {
        let mut src = source(100_000, 50_000);
        let b = step_buckets(&mut src, 0, Grid::new(49_990.0, 50_009.0, 20)).unwrap();
        assert_eq!(b.len(), 20);
        assert_eq!(b.x[10], 50_000.0);
        assert_eq!(b.max[10], 1e6);
        assert_eq!(b.count, vec![1; 20]);
    }

    #[test]
    fn dense_and_pointwise_bucketing_agree() {
        let values: Vec<f64> = (0..10_007).map(|i| ((i * 7919) % 1000) as f64 - if i == 5000 { f64::NAN } else { 0.0 }).collect();
        for (lo, hi, n) in
            [(0.0, 10_006.0, 1000), (3.0, 9_999.5, 7), (100.0, 100.0, 5), (-50.0, 20_000.0, 333), (0.0, 10_006.0, 30_000), (0.0, 10_006.0, 2_000), (1.5, 9_000.0, 1_500)]
        {
            let grid = Grid::new(lo, hi, n);
            let mut dense = Bucketer::new(grid);
            dense.push_dense(0, &values);
            let mut pointwise = Bucketer::new(grid);
            for (i, &v) in values.iter().enumerate() {
                pointwise.push(i as f64, i as i64, v);
            }
            let (a, b) = (dense.finish(), pointwise.finish());
            assert_eq!(a.len(), b.len(), "{lo} {hi} {n}");
            let same = |x: f64, y: f64| x == y || (x.is_nan() && y.is_nan());
            for i in 0..a.len() {
                let fields = [("x", a.x[i], b.x[i]), ("min", a.min[i], b.min[i]), ("max", a.max[i], b.max[i]), ("last", a.last[i], b.last[i])];
                for (name, x, y) in fields {
                    assert!(same(x, y), "grid {lo} {hi} {n}: bucket {i} {name}: dense {x} pointwise {y}");
                }
                assert_eq!(a.count[i], b.count[i], "grid {lo} {hi} {n}: bucket {i} count");
            }
        }
    }

    #[test]
    fn join_and_xy() {
        let x = NumericSeries { steps: vec![0, 1, 2, 4], values: vec![0.0, 10.0, 20.0, 40.0] };
        let y = NumericSeries { steps: vec![1, 2, 3, 4], values: vec![1.0, 2.0, 3.0, 4.0] };
        let pts = join(&x, &y);
        assert_eq!(pts, vec![(10.0, 1, 1.0), (20.0, 2, 2.0), (40.0, 4, 4.0)]);
        let (lo, hi) = x_range(&pts).unwrap();
        let b = xy_buckets(&pts, Grid::new(lo, hi, 3));
        assert_eq!(b.count, vec![1, 1, 1]);
        assert_eq!(b.last, vec![1.0, 2.0, 4.0]);
    }
}

/// Property tests of the bucketing invariants: every bucket has min <= mean <= max, the counts
/// add up to the points in range, a single spike survives any bucketing, and the fast dense path
/// gives what pushing point by point gives.
#[cfg(test)]
mod props {
    use proptest::prelude::*;

    use super::*;

    fn series() -> impl Strategy<Value = (i64, Vec<f64>)> {
        (-1_000_000i64..1_000_000, prop::collection::vec(prop_oneof![20 => -1e6f64..1e6, 1 => Just(f64::NAN)], 1..3000))
    }

    fn grid_over(start: i64, len: usize) -> impl Strategy<Value = Grid> {
        let (first, last) = (start as f64, (start + len as i64 - 1) as f64);
        (-50.0f64..50.0, -50.0f64..50.0, 1usize..600).prop_map(move |(a, b, n)| Grid::new(first + a, (last + b).max(first + a), n))
    }

    fn inside(grid: &Grid, start: i64, len: usize) -> u64 {
        (0..len as i64).filter(|i| grid.contains((start + i) as f64)).count() as u64
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

        #[test]
        fn buckets_hold_their_points((start, values, grid) in series().prop_flat_map(|(s, v)| { let n = v.len(); (Just(s), Just(v), grid_over(s, n)) })) {
            let mut fast = Bucketer::new(grid);
            fast.push_dense(start, &values);
            let fast = fast.finish();
            let mut slow = Bucketer::new(grid);
            for (i, &y) in values.iter().enumerate() {
                let step = start + i as i64;
                slow.push(step as f64, step, y);
            }
            let slow = slow.finish();
            prop_assert_eq!(&fast.index, &slow.index);
            prop_assert_eq!(&fast.count, &slow.count);
            prop_assert_eq!(fast.count.iter().sum::<u64>(), inside(&grid, start, values.len()));
            for i in 0..fast.len() {
                if fast.min[i].is_nan() {
                    continue; // only NaN in this bucket
                }
                // The mean is a sum over a count: within rounding of the bounds.
                let tol = 1e-9 * fast.min[i].abs().max(fast.max[i].abs()).max(1.0);
                prop_assert!(fast.min[i] <= fast.mean[i] + tol && fast.mean[i] <= fast.max[i] + tol,
                    "bucket {}: {} <= {} <= {}", i, fast.min[i], fast.mean[i], fast.max[i]);
                prop_assert_eq!((fast.min[i], fast.max[i]), (slow.min[i], slow.max[i]));
                prop_assert!(fast.x_min[i] <= fast.x_max[i]);
            }
        }

        #[test]
        fn a_single_spike_survives_any_bucketing(len in 1usize..5000, at in any::<prop::sample::Index>(), n in 1usize..800, start in -1000i64..1000) {
            let mut values = vec![0.5; len];
            let spike = at.index(len);
            values[spike] = 1e9;
            let grid = Grid::new(start as f64, (start + len as i64 - 1) as f64, n);
            let mut b = Bucketer::new(grid);
            b.push_dense(start, &values);
            let buckets = b.finish();
            let holder = grid.index((start + spike as i64) as f64) as u32;
            let i = buckets.index.iter().position(|&x| x == holder).expect("the spike's bucket is there");
            prop_assert_eq!(buckets.max[i], 1e9);
            prop_assert_eq!(buckets.max.iter().cloned().fold(f64::MIN, f64::max), 1e9);
        }
    }
}
