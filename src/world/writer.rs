//! Generated tables: rows made in parallel in fixed order and handed on in chunks, so that at
//! most two chunks of rows are in memory at a time; [`crate::shards`] writes them.

use datafusion::common::{DataFusionError, Result};

use crate::shards::CHUNK_ROWS;

/// Makes rows `0..rows` with `make` on `threads` threads, in chunks of [`CHUNK_ROWS`], and
/// hands each chunk to `sink` in row order (while the next chunk is being made).
pub fn generate<R, M, S>(rows: u64, threads: usize, make: M, mut sink: S) -> Result<()>
where
    R: Send,
    M: Fn(u64) -> Result<R> + Sync,
    S: FnMut(Vec<R>) -> Result<()>,
{
    let threads = threads.max(1);
    let make = &make;
    let mut pending: Option<Vec<R>> = None;
    let mut start = 0u64;
    while start < rows {
        let end = (start + CHUNK_ROWS as u64).min(rows);
        let per_thread = (end - start).div_ceil(threads as u64);
        let made = std::thread::scope(|scope| -> Result<Vec<R>> {
            let handles: Vec<_> = (0..threads as u64)
                .map(|t| {
                    let lo = (start + t * per_thread).min(end);
                    let hi = (lo + per_thread).min(end);
                    scope.spawn(move || (lo..hi).map(make).collect::<Result<Vec<R>>>())
                })
                .collect();
            // The previous chunk is written while this one is made.
            let sunk = pending.take().map(&mut sink).transpose();
            let mut out = Vec::with_capacity((end - start) as usize);
            for handle in handles {
                let part = handle.join().map_err(|_| {
                    DataFusionError::Internal("a world generator thread panicked".into())
                })?;
                out.extend(part?);
            }
            sunk?;
            Ok(out)
        })?;
        pending = Some(made);
        start = end;
    }
    if let Some(last) = pending {
        sink(last)?;
    }
    Ok(())
}
