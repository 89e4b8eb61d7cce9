//! hqflow's SQL functions, one per file, all registered by [`crate::register_all`].

mod byte_length;
mod cached;
mod clip_common;
mod clip_embed;
mod columns;
mod dfn_score;
mod lvlm_refine;
mod model_id;

pub use byte_length::ByteLength;
pub use clip_embed::{ClipEmbed, Tower};
pub use dfn_score::DfnScore;
pub use lvlm_refine::{LvlmRefine, refinement_fields};
pub use model_id::ModelId;

use datafusion::logical_expr::ScalarUDF;

use crate::options::HqflowOptions;

/// Every hqflow SQL function, built for a session with `options`.
pub fn all(options: &HqflowOptions) -> Vec<ScalarUDF> {
    vec![
        ScalarUDF::new_from_impl(ByteLength::default()),
        ScalarUDF::new_from_impl(ClipEmbed::new(Tower::Image, options.clone())),
        ScalarUDF::new_from_impl(ClipEmbed::new(Tower::Text, options.clone())),
        ScalarUDF::new_from_impl(DfnScore::new(options.clone())),
        ScalarUDF::new_from_impl(LvlmRefine::new(options.clone())),
        ScalarUDF::new_from_impl(ModelId::new(options.clone())),
    ]
}
