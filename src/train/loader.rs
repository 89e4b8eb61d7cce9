//! The data path: a reader thread streams rows (Parquet through DataFusion) into a shuffle
//! buffer and cuts batches of raw rows; worker threads decode, crop and tokenize them; the
//! trainer takes prepared batches in order.
//!
//! Everything random is keyed by the seed and a position: the shuffle by one stream over the
//! whole run, the crop and text choice of a row by (batch, row in batch). So a run is
//! reproducible whatever the thread timing, and a resumed run replays the reader past the
//! batches already drawn (reading, not decoding) to continue at the exact same row.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use datafusion::common::{DataFusionError, Result};
use futures::StreamExt;
use hqflow_udfs::models::preprocess::Preprocessor;
use hqflow_udfs::models::tokenizer::ClipTokenizer;
use hqflow_udfs::training::{TagLabel, TrainBatch};

use super::augment::{Crop, augment};
use super::caption_edit::edited_caption;
use super::shuffle::ShuffleBuffer;
use super::source::{self, Columns, Row};
use crate::world::rng::Rng;

/// Keys of the random streams.
const SHUFFLE: u64 = 0x5348_5546;
const SAMPLE: u64 = 0x5341_4D50;

/// What the loader needs.
pub struct LoaderConfig {
    /// The table's location.
    pub location: String,
    /// An optional query over `data`.
    pub query: Option<String>,
    /// Columns to read (already checked).
    pub columns: Columns,
    /// Pairs per batch.
    pub batch_size: usize,
    /// Shuffle buffer rows.
    pub shuffle_buffer: usize,
    /// Worker threads.
    pub workers: usize,
    /// Seed.
    pub seed: u64,
    /// Batches already drawn by an earlier run (skipped, not decoded).
    pub skip_batches: u64,
    /// Weights of txt, long_pos, short_pos.
    pub text_weights: [f64; 3],
    /// The crop.
    pub crop: Crop,
    /// Normalization of the model's preprocessing.
    pub norm: Preprocessor,
    /// The tokenizer.
    pub tokenizer: Arc<ClipTokenizer>,
    /// Tags the tag loss knows; empty without the tag loss.
    pub tag_vocab: Arc<HashSet<String>>,
    /// Share of rows whose hard negative is an edit of their caption.
    pub edited_negative: f64,
}

/// Rows seen and skipped.
#[derive(Debug, Default)]
pub struct Counts {
    /// Rows read from the table (replayed rows included).
    pub rows_read: AtomicU64,
    /// Epochs started.
    pub epochs: AtomicU64,
    /// Rows skipped: NULL image.
    pub null_image: AtomicU64,
    /// Rows skipped: no text in any weighted source (NULL or blank).
    pub no_text: AtomicU64,
    /// Rows skipped: image did not decode.
    pub bad_image: AtomicU64,
}

impl Counts {
    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// A snapshot as JSON.
    pub fn to_json(&self) -> serde_json::Value {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        serde_json::json!({
            "rows_read": get(&self.rows_read),
            "epochs_started": get(&self.epochs),
            "skipped_null_image": get(&self.null_image),
            "skipped_no_text": get(&self.no_text),
            "skipped_bad_image": get(&self.bad_image),
        })
    }
}

/// A prepared batch and where it came from.
pub struct Prepared {
    /// 0-based index among the batches of the run.
    pub index: u64,
    /// The epoch its first row came from.
    pub epoch: u64,
    /// The batch.
    pub batch: TrainBatch,
}

struct Job {
    index: u64,
    epoch: u64,
    rows: Vec<Row>,
}

type Reply = (u64, Result<Prepared>);

/// A running loader.
pub struct Loader {
    replies: Receiver<Reply>,
    pending: BTreeMap<u64, Result<Prepared>>,
    next: u64,
    counts: Arc<Counts>,
    threads: Vec<JoinHandle<()>>,
}

impl Loader {
    /// Starts the reader and workers.
    pub fn start(config: LoaderConfig) -> Result<Loader> {
        let config = Arc::new(config);
        let counts = Arc::new(Counts::default());
        let (job_tx, job_rx) = sync_channel::<Job>(config.workers * 2);
        let (reply_tx, replies) = sync_channel::<Reply>(config.workers * 2 + 2);
        let job_rx = Arc::new(Mutex::new(job_rx));
        let mut threads = Vec::new();
        {
            let (config, counts, reply_tx) = (config.clone(), counts.clone(), reply_tx.clone());
            threads.push(spawn("hqflow-train-reader", move || {
                if let Err(e) = read(&config, &counts, &job_tx) {
                    // The trainer waits for the next batch in order: hand it the error there.
                    let _ = reply_tx.send((u64::MAX, Err(e)));
                }
            })?);
        }
        for i in 0..config.workers {
            let (config, counts, reply_tx, job_rx) = (
                config.clone(),
                counts.clone(),
                reply_tx.clone(),
                job_rx.clone(),
            );
            threads.push(spawn(&format!("hqflow-train-worker-{i}"), move || {
                loop {
                    let job = match job_rx.lock() {
                        Ok(rx) => rx.recv(),
                        Err(_) => return,
                    };
                    let Ok(job) = job else { return };
                    let index = job.index;
                    let prepared = prepare(&config, &counts, job);
                    if reply_tx.send((index, prepared)).is_err() {
                        return;
                    }
                }
            })?);
        }
        Ok(Loader {
            replies,
            pending: BTreeMap::new(),
            next: config.skip_batches,
            counts,
            threads,
        })
    }

    /// The counts so far.
    pub fn counts(&self) -> &Counts {
        &self.counts
    }

    /// The next batch in order.
    pub fn next_batch(&mut self) -> Result<Prepared> {
        loop {
            if let Some(ready) = self.pending.remove(&self.next) {
                self.next += 1;
                return ready;
            }
            match self.replies.recv() {
                Ok((u64::MAX, Err(e))) => return Err(e),
                Ok((index, reply)) => {
                    self.pending.insert(index, reply);
                }
                Err(_) => {
                    return Err(DataFusionError::Internal(
                        "the data loader stopped without an error".into(),
                    ));
                }
            }
        }
    }
}

impl Drop for Loader {
    fn drop(&mut self) {
        // Closing the reply channel ends the workers, then the reader; threads are detached
        // rather than joined so that a reader deep in a Parquet read does not hold up exit.
        self.threads.clear();
    }
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(f)
        .map_err(|e| DataFusionError::Execution(format!("cannot start thread {name}: {e}")))
}

/// Whether `row` can train: an image and a text in a source with a weight.
fn usable(row: &Row, weights: &[f64; 3], counts: &Counts) -> bool {
    if row.img.is_none() {
        Counts::add(&counts.null_image, 1);
        return false;
    }
    let has_text = row
        .texts
        .iter()
        .zip(weights)
        .any(|(t, w)| t.is_some() && *w > 0.0);
    if !has_text {
        Counts::add(&counts.no_text, 1);
    }
    has_text
}

/// The reader: epochs of the table through the shuffle buffer, cut into jobs.
fn read(config: &LoaderConfig, counts: &Counts, jobs: &SyncSender<Job>) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| DataFusionError::Execution(format!("cannot start the reader: {e}")))?;
    runtime.block_on(async {
        let ctx = source::open(&config.location).await?;
        let frame = source::project(
            source::frame(&ctx, config.query.as_deref()).await?,
            config.columns,
        )?;
        let mut rng = Rng::stream(config.seed, &[SHUFFLE]);
        let mut buffer = ShuffleBuffer::new(config.shuffle_buffer);
        let mut cutter = Cutter {
            batch_size: config.batch_size,
            skip_rows: config.skip_batches.saturating_mul(config.batch_size as u64),
            drawn: 0,
            index: 0,
            rows: Vec::new(),
            epoch: 0,
            jobs,
        };
        for epoch in 0u64.. {
            Counts::add(&counts.epochs, 1);
            cutter.epoch = epoch;
            let mut stream = frame.clone().execute_stream().await?;
            let (mut read_rows, mut kept) = (0u64, 0u64);
            while let Some(batch) = stream.next().await {
                let batch = batch?;
                for row in source::rows(&batch)? {
                    read_rows += 1;
                    Counts::add(&counts.rows_read, 1);
                    if !usable(&row, &config.text_weights, counts) {
                        continue;
                    }
                    kept += 1;
                    if let Some(out) = buffer.push(row, &mut rng)
                        && !cutter.emit(out)
                    {
                        return Ok(());
                    }
                }
            }
            if kept == 0 {
                return Err(if read_rows == 0 {
                    DataFusionError::Plan(format!(
                        "the training table '{}' is empty",
                        config.location
                    ))
                } else {
                    DataFusionError::Plan(format!(
                        "the training table '{}' has no usable rows: {read_rows} read, {} \
                         with a NULL image, {} without text in the recipe's text sources",
                        config.location,
                        counts.null_image.load(Ordering::Relaxed),
                        counts.no_text.load(Ordering::Relaxed)
                    ))
                });
            }
            for out in buffer.drain(&mut rng) {
                if !cutter.emit(out) {
                    return Ok(());
                }
            }
        }
        Ok(())
    })
}

/// Cuts the shuffled row stream into jobs, skipping the rows of already-drawn batches.
struct Cutter<'a> {
    batch_size: usize,
    skip_rows: u64,
    drawn: u64,
    index: u64,
    rows: Vec<Row>,
    epoch: u64,
    jobs: &'a SyncSender<Job>,
}

impl Cutter<'_> {
    /// Takes one row; false once the trainer is gone.
    fn emit(&mut self, row: Row) -> bool {
        self.drawn += 1;
        if self.drawn <= self.skip_rows {
            if self.drawn.is_multiple_of(self.batch_size as u64) {
                self.index += 1;
            }
            return true;
        }
        self.rows.push(row);
        if self.rows.len() < self.batch_size {
            return true;
        }
        let job = Job {
            index: self.index,
            epoch: self.epoch,
            rows: std::mem::take(&mut self.rows),
        };
        self.index += 1;
        self.jobs.send(job).is_ok()
    }
}

/// Picks a source index by weight among those with text.
fn pick_text(texts: &[Option<String>; 3], weights: &[f64; 3], rng: &mut Rng) -> Option<usize> {
    let total: f64 = texts
        .iter()
        .zip(weights)
        .filter(|(t, _)| t.is_some())
        .map(|(_, w)| *w)
        .sum();
    if total <= 0.0 {
        return None;
    }
    let mut u = rng.unit() * total;
    let mut last = None;
    for (i, (t, w)) in texts.iter().zip(weights).enumerate() {
        if t.is_some() && *w > 0.0 {
            last = Some(i);
            if u < *w {
                return Some(i);
            }
            u -= w;
        }
    }
    last
}

/// Labels the row about to join `batch` with its known tags; each distinct tag is tokenized
/// once per batch (`local` maps a tag to its place in `batch.tags`).
fn add_tags<'a>(
    config: &LoaderConfig,
    batch: &mut TrainBatch,
    local: &mut HashMap<&'a str, usize>,
    row: &'a Row,
) -> Result<()> {
    if config.tag_vocab.is_empty() {
        return Ok(());
    }
    let image = batch.texts.len();
    for (positive, tags) in [(true, &row.tags[0]), (false, &row.tags[1])] {
        for tag in tags {
            if !config.tag_vocab.contains(tag) {
                continue;
            }
            let index = match local.get(tag.as_str()) {
                Some(&i) => i,
                None => {
                    let ids = config
                        .tokenizer
                        .encode(tag)
                        .map_err(|e| DataFusionError::Execution(e.0))?;
                    batch.tags.push(ids);
                    local.insert(tag, batch.tags.len() - 1);
                    batch.tags.len() - 1
                }
            };
            batch.tag_labels.push(TagLabel {
                row: image,
                tag: index,
                positive,
            });
        }
    }
    Ok(())
}

/// A worker's job: decode, crop, tokenize; rows whose image does not decode are dropped.
fn prepare(config: &LoaderConfig, counts: &Counts, job: Job) -> Result<Prepared> {
    let mut batch = TrainBatch::default();
    let mut local_tags = HashMap::new();
    let model_err = |e: hqflow_udfs::models::ModelError| DataFusionError::Execution(e.0);
    for (k, row) in job.rows.iter().enumerate() {
        let mut rng = Rng::stream(config.seed, &[SAMPLE, job.index, k as u64]);
        let Some(bytes) = &row.img else { continue };
        let pixels = match augment(bytes, &config.crop, &config.norm, &mut rng) {
            Ok(p) => p,
            Err(_) => {
                Counts::add(&counts.bad_image, 1);
                continue;
            }
        };
        let Some(source) = pick_text(&row.texts, &config.text_weights, &mut rng) else {
            continue;
        };
        let Some(text) = &row.texts[source] else {
            continue;
        };
        add_tags(config, &mut batch, &mut local_tags, row)?;
        batch.pixels.extend_from_slice(&pixels);
        batch
            .texts
            .push(config.tokenizer.encode(text).map_err(model_err)?);
        let edited = (config.edited_negative > 0.0 && rng.chance(config.edited_negative))
            .then(|| edited_caption(text, &row.tags[0], &row.tags[1], &mut rng))
            .flatten();
        let long_neg = row.negative.as_ref().filter(|_| config.columns.long_neg);
        let negative = edited.as_ref().or(long_neg);
        batch.negatives.push(
            negative
                .map(|neg| config.tokenizer.encode(neg).map_err(model_err))
                .transpose()?,
        );
    }
    Ok(Prepared {
        index: job.index,
        epoch: job.epoch,
        batch,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_choice_follows_weights_and_presence() {
        let mut rng = Rng::stream(9, &[1]);
        let all = [Some("a".to_string()), Some("b".to_string()), None];
        let mut hits = [0usize; 3];
        for _ in 0..4000 {
            hits[pick_text(&all, &[1.0, 3.0, 5.0], &mut rng).expect("a choice")] += 1;
        }
        assert_eq!(hits[2], 0);
        assert!((hits[1] as f64 / 4000.0 - 0.75).abs() < 0.05, "{hits:?}");
        assert_eq!(pick_text(&all, &[0.0, 0.0, 1.0], &mut rng), None);
    }
}
