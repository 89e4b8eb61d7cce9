//! `byte_length(bytes)`: the size of a binary value in bytes.

use std::sync::Arc;

use super::columns::binary_rows;

use datafusion::arrow::array::{ArrayRef, Int64Array};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Result, ScalarValue, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

/// `byte_length(bytes)` → Int64: the number of bytes in a binary value (an encoded image,
/// say). DataFusion's `octet_length` takes strings only, and `length(img)` fails on bytes
/// that are not UTF-8.
///
/// Syntax: `byte_length(expr)`; `expr` is Binary, LargeBinary, BinaryView or FixedSizeBinary.
/// NULL in, NULL out.
///
/// ```sql
/// SELECT avg(byte_length(img)) AS mean_image_bytes FROM pool;
/// ```
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ByteLength {
    signature: Signature,
}

impl Default for ByteLength {
    fn default() -> Self {
        ByteLength {
            signature: Signature::any(1, Volatility::Immutable),
        }
    }
}

fn lengths(array: &ArrayRef) -> Result<Int64Array> {
    Ok(binary_rows(array)?
        .iter()
        .map(|v| v.map(|b| b.len() as i64))
        .collect())
}

impl ScalarUDFImpl for ByteLength {
    fn name(&self) -> &str {
        "byte_length"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        match &args[0] {
            DataType::Binary
            | DataType::LargeBinary
            | DataType::BinaryView
            | DataType::FixedSizeBinary(_)
            | DataType::Null => Ok(DataType::Int64),
            other => plan_err!(
                "byte_length: argument 1 must be binary (Binary, LargeBinary, BinaryView), got {other}; \
                 for text use octet_length"
            ),
        }
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        match &args.args[0] {
            ColumnarValue::Array(array) => Ok(ColumnarValue::Array(Arc::new(lengths(array)?))),
            ColumnarValue::Scalar(scalar) => {
                let array = scalar.to_array()?;
                let out = lengths(&array)?;
                Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?))
            }
        }
    }

    fn documentation(&self) -> Option<&Documentation> {
        None
    }
}
