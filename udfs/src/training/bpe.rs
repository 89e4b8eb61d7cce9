//! A small byte-level BPE tokenizer trained on the data's own texts, for models trained from
//! scratch, saved as a standard `tokenizer.json` that hqflow and transformers both load.
//!
//! Shape: NFC + lowercase (as CLIP's tokenizer), GPT-2 byte-level pre-tokenization (every
//! byte encodable, no unknown token), BPE, and `<|startoftext|> … <|endoftext|>` around each
//! text. The two specials are ids 0 and 1; the model pools at the first `<|endoftext|>`.

use tokenizers::decoders::DecoderWrapper;
use tokenizers::models::bpe::{BPE, BpeTrainerBuilder};
use tokenizers::normalizers::{Lowercase, NFC, NormalizerWrapper, Sequence};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::processors::PostProcessorWrapper;
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{AddedToken, Model, TokenizerBuilder, TokenizerImpl};

use crate::models::{ModelError, ModelResult};

/// The start-of-text token (id [`BOS_ID`]).
pub const BOS: &str = "<|startoftext|>";
/// The end-of-text token (id [`EOS_ID`]), where the text tower pools.
pub const EOS: &str = "<|endoftext|>";
/// Id of [`BOS`].
pub const BOS_ID: u32 = 0;
/// Id of [`EOS`].
pub const EOS_ID: u32 = 1;

/// The smallest vocabulary: 256 byte symbols plus the two specials.
pub const MIN_VOCAB: usize = 258;

type Bpe = TokenizerImpl<
    BPE,
    NormalizerWrapper,
    PreTokenizerWrapper,
    PostProcessorWrapper,
    DecoderWrapper,
>;

fn err(e: impl std::fmt::Display) -> ModelError {
    ModelError(format!("tokenizer training: {e}"))
}

/// Trains a tokenizer of at most `vocab_size` entries on `texts`; returns `tokenizer.json`'s
/// text and the vocabulary size reached.
pub fn train<I>(texts: I, vocab_size: usize) -> ModelResult<(String, usize)>
where
    I: Iterator<Item = String> + Send,
{
    if vocab_size < MIN_VOCAB {
        return Err(ModelError(format!(
            "tokenizer vocab_size {vocab_size} is below the minimum {MIN_VOCAB} (256 bytes + 2 specials)"
        )));
    }
    let mut trainer = BpeTrainerBuilder::new()
        .show_progress(false)
        .vocab_size(vocab_size)
        .min_frequency(2)
        .special_tokens(vec![
            AddedToken::from(BOS.to_string(), true),
            AddedToken::from(EOS.to_string(), true),
        ])
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .build();
    let template = TemplateProcessing::builder()
        .try_single(format!("{BOS} $A {EOS}"))
        .map_err(err)?
        .special_tokens(vec![(BOS, BOS_ID), (EOS, EOS_ID)])
        .build()
        .map_err(err)?;
    let normalizer = Sequence::new(vec![NFC.into(), Lowercase.into()]);
    let mut tokenizer: Bpe = TokenizerBuilder::new()
        .with_model(BPE::default())
        .with_normalizer(Some(normalizer.into()))
        .with_pre_tokenizer(Some(ByteLevel::new(true, true, true).into()))
        .with_post_processor(Some(template.into()))
        .with_decoder(Some(ByteLevel::default().into()))
        .build()
        .map_err(err)?;
    tokenizer.train(&mut trainer, texts).map_err(err)?;
    let model = tokenizer.get_model();
    if model.token_to_id(BOS) != Some(BOS_ID) || model.token_to_id(EOS) != Some(EOS_ID) {
        return Err(err("the special tokens did not get ids 0 and 1"));
    }
    let size = model.get_vocab_size();
    Ok((tokenizer.to_string(true).map_err(err)?, size))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::tokenizer::ClipTokenizer;

    #[test]
    fn trains_and_round_trips_through_a_file() {
        let texts = [
            "A red circle left of a blue square",
            "a green triangle",
            "Blue squares!",
        ];
        let corpus = texts.iter().cycle().take(60).map(|s| s.to_string());
        let (json, size) = train(corpus, 300).expect("trains");
        assert!(size > MIN_VOCAB && size <= 300, "{size}");
        let dir = tempfile_dir();
        let path = dir.join("tokenizer.json");
        std::fs::write(&path, json).expect("write");
        let tok = ClipTokenizer::from_file(&path, 8).expect("loads");
        let ids = tok
            .encode("a red circle, ünïcode and more words than fit")
            .expect("encodes");
        assert_eq!(ids.len(), 8);
        assert_eq!(ids[0], BOS_ID);
        assert_eq!(*ids.last().expect("ids"), EOS_ID);
        let short = tok.encode("A RED CIRCLE").expect("encodes");
        assert_eq!(short, tok.encode("a red circle").expect("encodes"));
        let _ = std::fs::remove_dir_all(dir);
    }

    fn tempfile_dir() -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("hqflow-bpe-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir
    }
}
