//! Reading argument columns row by row, whatever the physical layout of their type family.

use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Result, exec_err};

/// Bytes per row of a binary column (Binary, LargeBinary, BinaryView, FixedSizeBinary, Null).
pub fn binary_rows(array: &ArrayRef) -> Result<Vec<Option<&[u8]>>> {
    Ok(match array.data_type() {
        DataType::Binary => array.as_binary::<i32>().iter().collect(),
        DataType::LargeBinary => array.as_binary::<i64>().iter().collect(),
        DataType::BinaryView => array.as_binary_view().iter().collect(),
        DataType::FixedSizeBinary(_) => array.as_fixed_size_binary().iter().collect(),
        DataType::Null => vec![None; array.len()],
        other => return exec_err!("expected binary, got {other}"),
    })
}

/// Text per row of a string column (Utf8, LargeUtf8, Utf8View, Null).
pub fn text_rows(array: &ArrayRef) -> Result<Vec<Option<&str>>> {
    Ok(match array.data_type() {
        DataType::Utf8 => array.as_string::<i32>().iter().collect(),
        DataType::LargeUtf8 => array.as_string::<i64>().iter().collect(),
        DataType::Utf8View => array.as_string_view().iter().collect(),
        DataType::Null => vec![None; array.len()],
        other => return exec_err!("expected text, got {other}"),
    })
}
