//! One forward thread per loaded model. Rows from every partition and query that use the model
//! meet in its queues and leave as micro-batches: a batch runs as soon as it is full, or when
//! its oldest row has waited the allowed time. Callers decode and tokenize on their own
//! threads while the previous micro-batch runs. Rows in flight (submitted, not yet answered)
//! are bounded per model across all callers, so fast decoders cannot pile up decoded images
//! in memory however many partitions feed the model.
//!
//! Results are keyed by the caller's row, so the order in which batches form and finish never
//! changes which result lands where.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::{ClipCheckpoint, ModelError, ModelResult};

/// What one row asks of the model.
#[derive(Debug)]
pub enum Input {
    /// An image as the checkpoint's `image_input` makes it (8-bit CHW planes).
    Image(Vec<u8>),
    /// Token ids (at most the context length).
    Text(Vec<u32>),
}

/// One row's answer: its key and its L2-normalized embedding, or why the forward failed.
#[derive(Debug)]
pub struct Reply {
    /// The key the caller submitted the row under.
    pub key: usize,
    /// The embedding, or the forward pass's error (which concerns the whole micro-batch).
    pub embedding: Result<Vec<f32>, String>,
}

/// How a caller's rows are batched.
#[derive(Debug, Clone, Copy)]
pub struct BatchPolicy {
    /// Rows per forward pass at most.
    pub batch: usize,
    /// How long a row may wait for others before a partial batch runs.
    pub max_wait: Duration,
    /// Rows that may be submitted and not yet answered, across every caller of the model
    /// (the largest any open caller asked for).
    pub in_flight: usize,
}

struct Item {
    key: usize,
    input: Input,
    reply: Sender<Reply>,
    batch: usize,
    deadline: Instant,
    // Frees the caller's in-flight slot when the row is answered, or dropped unanswered.
    _slot: Slot,
}

/// Forward passes that may run at once. On the CPU two: the matrix products use every core,
/// but candle runs the element-wise steps between them (bias and residual adds, activations,
/// layout copies) on one thread, so a second pass keeps the other cores busy meanwhile. A GPU runs one
/// stream, and one pass at a time keeps its memory use predictable.
fn forward_threads(device: &candle_core::Device) -> usize {
    if device.is_cpu() { 2 } else { 1 }
}

/// A loaded checkpoint and the threads that run its forward passes.
pub struct Batcher {
    checkpoint: Arc<ClipCheckpoint>,
    queue: Sender<Item>,
    counts: Arc<Counts>,
    slots: Arc<Slots>,
}

/// What a batcher has run so far.
#[derive(Debug, Default)]
pub struct Counts {
    /// Forward passes.
    pub batches: AtomicU64,
    /// Rows in them.
    pub rows: AtomicU64,
    /// Rows in the largest.
    pub largest: AtomicU64,
}

impl std::fmt::Debug for Batcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batcher")
            .field("checkpoint", &self.checkpoint.dir)
            .finish()
    }
}

impl Batcher {
    /// Starts the forward thread of `checkpoint`.
    pub fn start(checkpoint: Arc<ClipCheckpoint>) -> ModelResult<Self> {
        let (queue, rows) = channel();
        let counts = Arc::new(Counts::default());
        let intake = Arc::new(Mutex::new(Intake {
            rows,
            queues: Queues::default(),
            open: true,
        }));
        for _ in 0..forward_threads(checkpoint.model.device()) {
            let (model, counts, intake) = (
                Arc::clone(&checkpoint),
                Arc::clone(&counts),
                Arc::clone(&intake),
            );
            std::thread::Builder::new()
                .name("hqflow-forward".into())
                .spawn(move || serve(&model, &intake, &counts))
                .map_err(|e| ModelError(format!("cannot start a model thread: {e}")))?;
        }
        Ok(Batcher {
            checkpoint,
            queue,
            counts,
            slots: Arc::new(Slots {
                count: Mutex::new(SlotCount::default()),
                freed: Condvar::new(),
            }),
        })
    }

    /// The checkpoint: its preprocessing and tokenizer, for the callers' threads.
    pub fn checkpoint(&self) -> &ClipCheckpoint {
        &self.checkpoint
    }

    /// Forward passes and rows run so far.
    pub fn counts(&self) -> &Counts {
        &self.counts
    }

    /// A way in for one caller, and where its answers arrive. The answers end when every
    /// clone of the submitter is dropped and every submitted row is answered (or lost with
    /// a stopped model thread, which the caller sees as missing keys).
    pub fn open(&self, policy: BatchPolicy) -> ModelResult<(Submitter, Receiver<Reply>)> {
        let queue = self.queue.clone();
        self.slots.grow_to(policy.in_flight.max(1))?;
        let (reply, answers) = channel();
        let submitter = Submitter {
            queue,
            reply,
            policy,
            slots: Arc::clone(&self.slots),
        };
        Ok((submitter, answers))
    }
}

/// Hands one caller's rows to a model's forward thread.
#[derive(Clone)]
pub struct Submitter {
    queue: Sender<Item>,
    reply: Sender<Reply>,
    policy: BatchPolicy,
    slots: Arc<Slots>,
}

impl Submitter {
    /// Queues a row under `key`; waits while the model has its limit of rows in flight.
    pub fn submit(&self, key: usize, input: Input) -> ModelResult<()> {
        let slot = self.slots.take()?;
        let item = Item {
            key,
            input,
            reply: self.reply.clone(),
            batch: self.policy.batch.max(1),
            deadline: Instant::now() + self.policy.max_wait,
            _slot: slot,
        };
        self.queue
            .send(item)
            .map_err(|_| ModelError("the model thread has stopped".into()))
    }
}

struct Slots {
    count: Mutex<SlotCount>,
    freed: Condvar,
}

#[derive(Default)]
struct SlotCount {
    free: usize,
    capacity: usize,
}

fn poisoned() -> ModelError {
    ModelError("in-flight limit poisoned by a panic".into())
}

impl Slots {
    fn grow_to(&self, capacity: usize) -> ModelResult<()> {
        let mut count = self.count.lock().map_err(|_| poisoned())?;
        if capacity > count.capacity {
            count.free += capacity - count.capacity;
            count.capacity = capacity;
            self.freed.notify_all();
        }
        Ok(())
    }

    fn take(self: &Arc<Self>) -> ModelResult<Slot> {
        let mut count = self.count.lock().map_err(|_| poisoned())?;
        while count.free == 0 {
            count = self.freed.wait(count).map_err(|_| poisoned())?;
        }
        count.free -= 1;
        Ok(Slot(Arc::clone(self)))
    }
}

struct Slot(Arc<Slots>);

impl Drop for Slot {
    fn drop(&mut self) {
        if let Ok(mut count) = self.0.count.lock() {
            count.free += 1;
            self.0.freed.notify_one();
        }
    }
}

#[derive(Default)]
struct Queues {
    images: VecDeque<Item>,
    texts: VecDeque<Item>,
}

impl Queues {
    fn push(&mut self, item: Item) {
        match item.input {
            Input::Image(_) => self.images.push_back(item),
            Input::Text(_) => self.texts.push_back(item),
        }
    }

    fn is_empty(&self) -> bool {
        self.images.is_empty() && self.texts.is_empty()
    }

    /// The queue to run now, if any: a full one, else one whose oldest row is due.
    fn ready(&mut self, now: Instant) -> Option<&mut VecDeque<Item>> {
        let full = |q: &VecDeque<Item>| q.front().is_some_and(|f| q.len() >= f.batch);
        let due = |q: &VecDeque<Item>| q.front().is_some_and(|f| f.deadline <= now);
        let oldest_first = self.images.front().map(|f| f.deadline)
            <= self.texts.front().map(|f| f.deadline)
            || self.texts.is_empty();
        let (first, second) = if oldest_first && !self.images.is_empty() {
            (&mut self.images, &mut self.texts)
        } else {
            (&mut self.texts, &mut self.images)
        };
        if full(first) || due(first) {
            Some(first)
        } else if full(second) || due(second) {
            Some(second)
        } else {
            None
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        [self.images.front(), self.texts.front()]
            .into_iter()
            .flatten()
            .map(|f| f.deadline)
            .min()
    }
}

/// Where rows arrive and wait to be batched; one forward thread at a time forms a batch.
struct Intake {
    rows: Receiver<Item>,
    queues: Queues,
    open: bool,
}

impl Intake {
    /// The next micro-batch, waiting for it as long as needed; `None` once every caller is
    /// gone and nothing is queued.
    fn next_batch(&mut self) -> Option<Vec<Item>> {
        let queues = &mut self.queues;
        while self.open || !queues.is_empty() {
            if queues.is_empty() {
                match self.rows.recv() {
                    Ok(item) => queues.push(item),
                    Err(_) => return None,
                }
            }
            while let Ok(item) = self.rows.try_recv() {
                queues.push(item);
            }
            let now = Instant::now();
            if let Some(queue) = queues.ready(now) {
                let take = queue.front().map_or(0, |f| f.batch).min(queue.len());
                return Some(queue.drain(..take).collect());
            }
            let Some(deadline) = queues.next_deadline() else {
                continue;
            };
            match self
                .rows
                .recv_timeout(deadline.saturating_duration_since(now))
            {
                Ok(item) => queues.push(item),
                Err(RecvTimeoutError::Timeout) => {}
                // No caller can send any more: drain what is queued without waiting.
                Err(RecvTimeoutError::Disconnected) => {
                    self.open = false;
                    for queue in [&mut queues.images, &mut queues.texts] {
                        for item in queue.iter_mut() {
                            item.deadline = now;
                        }
                    }
                }
            }
        }
        None
    }
}

fn serve(model: &ClipCheckpoint, intake: &Mutex<Intake>, counts: &Counts) {
    loop {
        // Another forward thread forming a batch holds the intake; this one waits its turn.
        let batch = match intake.lock() {
            Ok(mut intake) => intake.next_batch(),
            Err(_) => None,
        };
        let Some(batch) = batch else { return };
        counts.batches.fetch_add(1, Ordering::Relaxed);
        counts.rows.fetch_add(batch.len() as u64, Ordering::Relaxed);
        counts
            .largest
            .fetch_max(batch.len() as u64, Ordering::Relaxed);
        run(model, batch);
    }
}

/// Runs one micro-batch (all images or all texts) and answers each row.
fn run(model: &ClipCheckpoint, batch: Vec<Item>) {
    let mut pixels = Vec::new();
    let mut tokens = Vec::new();
    let mut answer_to = Vec::with_capacity(batch.len());
    for item in batch {
        match item.input {
            Input::Image(p) => pixels.push(p),
            Input::Text(t) => tokens.push(t),
        }
        answer_to.push((item.key, item.reply, item._slot));
    }
    let result = catch_unwind(AssertUnwindSafe(|| {
        if tokens.is_empty() {
            model.embed_image_inputs(&pixels)
        } else {
            model.model.embed_text(&tokens)
        }
    }));
    match result {
        Ok(Ok(embeddings)) if embeddings.len() == answer_to.len() => {
            for ((key, reply, _slot), embedding) in answer_to.into_iter().zip(embeddings) {
                // A caller that has gone (a cancelled query) no longer listens.
                let _ = reply.send(Reply {
                    key,
                    embedding: Ok(embedding),
                });
            }
        }
        outcome => {
            let error = match outcome {
                Ok(Ok(e)) => format!("{} embeddings for {} rows", e.len(), answer_to.len()),
                Ok(Err(e)) => e.to_string(),
                Err(_) => "the forward pass panicked (a bug in hqflow; please report it)".into(),
            };
            for (key, reply, _slot) in answer_to {
                let _ = reply.send(Reply {
                    key,
                    embedding: Err(error.clone()),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn tiny() -> ModelResult<Arc<ClipCheckpoint>> {
        // The crate's directory when the test runs (see tests/it/support.rs `root`).
        let crate_dir = std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(
            || env!("CARGO_MANIFEST_DIR").into(),
            std::path::PathBuf::from,
        );
        let dir = crate_dir.join("../tests/data/clip/tiny-quickgelu");
        Ok(Arc::new(ClipCheckpoint::load(&dir, &Device::Cpu)?))
    }

    fn image(model: &ClipCheckpoint, seed: usize) -> Vec<u8> {
        let side = model.image_size();
        (0..3 * side * side)
            .map(|i| ((i * 31 + seed * 17) % 251) as u8)
            .collect()
    }

    /// Two callers on their own threads, each submitting `rows` images (caller c's row r is
    /// image c·rows + r); the answers each received.
    fn two_callers(
        batcher: &Batcher,
        model: &ClipCheckpoint,
        policy: BatchPolicy,
        rows: usize,
    ) -> ModelResult<Vec<Vec<Reply>>> {
        std::thread::scope(|scope| {
            let callers: Vec<_> = (0..2)
                .map(|caller| {
                    scope.spawn(move || -> ModelResult<Vec<Reply>> {
                        let (submitter, answers) = batcher.open(policy)?;
                        for row in 0..rows {
                            let pixels = image(model, caller * rows + row);
                            submitter.submit(row, Input::Image(pixels))?;
                        }
                        drop(submitter);
                        Ok(answers.iter().collect())
                    })
                })
                .collect();
            callers
                .into_iter()
                .map(|c| {
                    c.join()
                        .unwrap_or_else(|_| Err(ModelError("caller panicked".into())))
                })
                .collect()
        })
    }

    #[test]
    fn rows_from_several_callers_share_micro_batches() -> ModelResult<()> {
        let model = tiny()?;
        let batcher = Batcher::start(Arc::clone(&model))?;
        let policy = BatchPolicy {
            batch: 4,
            max_wait: Duration::from_secs(2),
            in_flight: 8,
        };
        let answers = two_callers(&batcher, &model, policy, 6)?;
        // 12 rows in batches of 4: 3 forward passes only if callers' rows were mixed.
        assert_eq!(batcher.counts().batches.load(Ordering::Relaxed), 3);
        assert_eq!(batcher.counts().rows.load(Ordering::Relaxed), 12);
        for (caller, replies) in answers.into_iter().enumerate() {
            assert_eq!(replies.len(), 6);
            for reply in replies {
                let expected =
                    model.embed_image_inputs(&[image(&model, caller * 6 + reply.key)])?;
                let got = reply.embedding.map_err(ModelError)?;
                let diff = got
                    .iter()
                    .zip(&expected[0])
                    .map(|(a, b)| (a - b).abs())
                    .fold(0.0, f32::max);
                assert!(diff < 1e-6, "row {} of caller {caller}: {diff}", reply.key);
            }
        }
        Ok(())
    }

    #[test]
    fn rows_in_flight_are_bounded_across_callers() -> ModelResult<()> {
        let model = tiny()?;
        let batcher = Batcher::start(Arc::clone(&model))?;
        let policy = BatchPolicy {
            batch: 4,
            max_wait: Duration::from_millis(30),
            in_flight: 2,
        };
        let answered = two_callers(&batcher, &model, policy, 3)?
            .iter()
            .flatten()
            .filter(|r| r.embedding.is_ok())
            .count();
        assert_eq!(answered, 6);
        // Never more than 2 rows submitted and unanswered, so no batch of more than 2.
        assert!(batcher.counts().largest.load(Ordering::Relaxed) <= 2);
        assert!(batcher.counts().batches.load(Ordering::Relaxed) >= 3);
        Ok(())
    }

    #[test]
    fn a_partial_batch_runs_after_the_wait() -> ModelResult<()> {
        let model = tiny()?;
        let batcher = Batcher::start(Arc::clone(&model))?;
        let (submitter, answers) = batcher.open(BatchPolicy {
            batch: 64,
            max_wait: Duration::from_millis(20),
            in_flight: 64,
        })?;
        submitter.submit(7, Input::Text(vec![49406, 320, 49407]))?;
        drop(submitter);
        let replies: Vec<Reply> = answers.iter().collect();
        assert_eq!(replies.len(), 1);
        assert_eq!(replies[0].key, 7);
        assert!(replies[0].embedding.is_ok());
        assert_eq!(batcher.counts().batches.load(Ordering::Relaxed), 1);
        Ok(())
    }
}
