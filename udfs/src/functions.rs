//! hqflow's SQL functions, one per file, all registered by [`crate::register_all`].

mod byte_length;

pub use byte_length::ByteLength;

use datafusion::logical_expr::ScalarUDF;

/// Every hqflow SQL function.
pub fn all() -> Vec<ScalarUDF> {
    vec![ScalarUDF::new_from_impl(ByteLength::default())]
}
