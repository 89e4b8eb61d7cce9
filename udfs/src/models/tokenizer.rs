//! Text to token ids with the checkpoint's own `tokenizer.json` (HF `tokenizers`), truncated
//! to the context length with the end-of-text token kept, as transformers does.

use std::path::Path;

use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

use super::{ModelError, ModelResult};

/// A checkpoint's tokenizer, truncating to `context_length` tokens including specials.
pub struct ClipTokenizer {
    inner: Tokenizer,
    context_length: usize,
}

/// Longer inputs are cut before tokenizing: 77 CLIP tokens never need more than this many
/// characters, and a 100k-character alt-text should not cost 100k characters of BPE.
const MAX_CHARS_PER_TOKEN: usize = 64;

/// Words whose BPE merges each tokenizing thread remembers (`tokenizers`' default: 10,000).
/// The cache keeps the first distinct words a thread sees and never evicts, and alt-text
/// keeps bringing new ones (numbers, file names, misspellings), so with the default it grew
/// all through a long query: a million-row `dfn_score` COPY had 6 MB more of glibc's heap in
/// use at 370 s (47.8 against 41.4 MB with this limit). The common words that make most hits
/// come first and fit in this. (`tokenizers` has no `&mut` access to a loaded model, hence
/// the clone in `from_file`: once per load.)
const BPE_CACHE_WORDS: usize = 1024;

impl ClipTokenizer {
    /// Loads `tokenizer.json` from `path`.
    pub fn from_file(path: &Path, context_length: usize) -> ModelResult<Self> {
        let mut inner = Tokenizer::from_file(path)
            .map_err(|e| ModelError(format!("cannot load tokenizer '{}': {e}", path.display())))?;
        inner
            .with_truncation(Some(TruncationParams {
                direction: TruncationDirection::Right,
                max_length: context_length,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
            }))
            .map_err(|e| ModelError(format!("tokenizer '{}': {e}", path.display())))?;
        inner.with_padding(None);
        // A clone of the model starts with an empty cache of its own.
        let mut model = inner.get_model().clone();
        model.resize_cache(BPE_CACHE_WORDS);
        inner.with_model(model);
        Ok(ClipTokenizer {
            inner,
            context_length,
        })
    }

    /// Token ids of `text`, with start and end tokens, at most the context length.
    pub fn encode(&self, text: &str) -> ModelResult<Vec<u32>> {
        let limit = self.context_length * MAX_CHARS_PER_TOKEN;
        let text = match text.char_indices().nth(limit) {
            Some((cut, _)) => &text[..cut],
            None => text,
        };
        let encoding = self
            .inner
            .encode(text, true)
            .map_err(|e| ModelError(format!("tokenization failed: {e}")))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// The text of token ids, special tokens left out.
    pub fn decode(&self, ids: &[u32]) -> ModelResult<String> {
        self.inner
            .decode(ids, true)
            .map_err(|e| ModelError(format!("detokenization failed: {e}")))
    }

    /// The context length sequences are truncated to.
    pub fn context_length(&self) -> usize {
        self.context_length
    }
}
