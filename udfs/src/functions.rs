//! hqflow's SQL functions, one per file, all registered by [`crate::register_all`].

mod byte_length;
mod clip_common;
mod clip_embed;
mod clip_embed_text;
mod dfn_score;

pub use byte_length::ByteLength;
pub use clip_embed::ClipEmbed;
pub use clip_embed_text::ClipEmbedText;
pub use dfn_score::DfnScore;

use datafusion::logical_expr::ScalarUDF;

use crate::options::HqflowOptions;

/// Every hqflow SQL function, built for a session with `options`.
pub fn all(options: &HqflowOptions) -> Vec<ScalarUDF> {
    vec![
        ScalarUDF::new_from_impl(ByteLength::default()),
        ScalarUDF::new_from_impl(ClipEmbed::new(options.clone())),
        ScalarUDF::new_from_impl(ClipEmbedText::new(options.clone())),
        ScalarUDF::new_from_impl(DfnScore::new(options.clone())),
    ]
}
