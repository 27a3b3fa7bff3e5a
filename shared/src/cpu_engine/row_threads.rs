//! The CPU engine's threads: natively, a matrix's rows (and attention's heads) are split into
//! ranges that a pool of threads (rayon) computes at once; every row is computed by the same
//! code whichever thread takes it, so any thread count gives the same bits. In the browser the
//! engine runs on the page's one thread.

use std::ops::Range;

use crate::generation::EngineError;

/// How many threads multiply a matrix's rows, and the pool they run on.
pub struct RowThreads {
    /// Threads in the pool (1: the caller's).
    #[cfg_attr(target_arch = "wasm32", allow(dead_code))]
    count: usize,
    #[cfg(not(target_arch = "wasm32"))]
    pool: Option<rayon::ThreadPool>,
}

impl RowThreads {
    /// One thread: the caller's.
    pub fn one() -> Self {
        Self {
            count: 1,
            #[cfg(not(target_arch = "wasm32"))]
            pool: None,
        }
    }

    /// `count` threads (at least 1); more than one needs a native build.
    pub fn new(count: usize) -> Result<Self, EngineError> {
        if count == 0 {
            return Err(EngineError::Unsupported(
                "the CPU engine needs at least 1 thread, not 0".into(),
            ));
        }
        if count == 1 {
            return Ok(Self::one());
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(count)
                .thread_name(|i| format!("cpu-engine-{i}"))
                .build()
                .map_err(|e| {
                    EngineError::Unsupported(format!("starting {count} CPU engine threads: {e}"))
                })?;
            Ok(Self {
                count,
                pool: Some(pool),
            })
        }
        #[cfg(target_arch = "wasm32")]
        Err(EngineError::Unsupported(format!(
            "{count} CPU engine threads: this build runs on one"
        )))
    }

    /// `work` over `rows` split into ranges, its results in row order: one range on one
    /// thread, a few per thread otherwise (so that a slow thread is not waited for long).
    pub fn map_rows<T: Send>(
        &self,
        rows: usize,
        work: impl Fn(Range<usize>) -> T + Sync,
    ) -> Vec<(Range<usize>, T)> {
        #[cfg(not(target_arch = "wasm32"))]
        if let Some(pool) = &self.pool {
            use rayon::prelude::*;
            let pieces = (self.count * 4).min(rows.max(1));
            let ranges: Vec<Range<usize>> = (0..pieces)
                .map(|i| rows * i / pieces..rows * (i + 1) / pieces)
                .collect();
            return pool.install(|| {
                ranges
                    .into_par_iter()
                    .map(|range| {
                        let result = work(range.clone());
                        (range, result)
                    })
                    .collect()
            });
        }
        vec![(0..rows, work(0..rows))]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_row_is_covered_once_in_order_at_any_thread_count() {
        for threads in [1, 2, 3, 8] {
            let pool = RowThreads::new(threads).unwrap();
            for rows in [0, 1, 5, 896, 4864] {
                let parts = pool.map_rows(rows, |range| range.clone().collect::<Vec<_>>());
                let seen: Vec<usize> = parts.into_iter().flat_map(|(_, rows)| rows).collect();
                assert_eq!(seen, (0..rows).collect::<Vec<_>>(), "{threads} threads");
            }
        }
    }

    #[test]
    fn zero_threads_is_refused() {
        assert!(RowThreads::new(0).is_err());
    }
}
