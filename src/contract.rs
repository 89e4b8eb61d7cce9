//! Schema contracts: the column names and types a pool or refined table must have,
//! kept as readable JSON under `schemas/` and checked against real tables.
//!
//! Types are written as Arrow type names (`Utf8`, `Binary`, `Int32`, `Float32`,
//! `List<Utf8>`) and matched by family, because the same column reaches us in different
//! physical types depending on the writer: Utf8/LargeUtf8/Utf8View (and dictionaries of
//! them) are all text, Binary/LargeBinary/BinaryView are all binary, integers of any width
//! are integers, Float16/32/64 are floats, and every list layout is a list.

use std::fmt;

use datafusion::arrow::datatypes::{DataType, Schema};
use datafusion::common::{DataFusionError, Result};
use serde::Deserialize;

/// The pool contract (`schemas/pool.json`), built in.
pub const POOL_JSON: &str = include_str!("../schemas/pool.json");
/// The refined contract (`schemas/refined.json`), built in.
pub const REFINED_JSON: &str = include_str!("../schemas/refined.json");

/// A column type family in a contract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContractType {
    /// Any string type.
    Utf8,
    /// Any binary type.
    Binary,
    /// Boolean.
    Boolean,
    /// Any integer type; the name says the width we write.
    Integer(&'static str),
    /// Any floating-point type; the name says the width we write.
    Float(&'static str),
    /// Any list layout whose items match.
    List(Box<ContractType>),
}

impl ContractType {
    /// Parses `Utf8`, `Binary`, `Boolean`, `Int32`, `Int64`, `Float32`, `Float64`, `List<T>`.
    pub fn parse(s: &str) -> std::result::Result<Self, String> {
        let s = s.trim();
        if let Some(inner) = s.strip_prefix("List<").and_then(|r| r.strip_suffix('>')) {
            return Ok(ContractType::List(Box::new(Self::parse(inner)?)));
        }
        Ok(match s {
            "Utf8" => ContractType::Utf8,
            "Binary" => ContractType::Binary,
            "Boolean" => ContractType::Boolean,
            "Int32" => ContractType::Integer("Int32"),
            "Int64" => ContractType::Integer("Int64"),
            "Float32" => ContractType::Float("Float32"),
            "Float64" => ContractType::Float("Float64"),
            other => {
                return Err(format!(
                    "unknown contract type '{other}' (known: Utf8, Binary, Boolean, Int32, Int64, Float32, Float64, List<T>)"
                ));
            }
        })
    }

    /// Whether an Arrow type belongs to this family.
    pub fn accepts(&self, dt: &DataType) -> bool {
        if let DataType::Dictionary(_, value) = dt {
            return self.accepts(value);
        }
        match self {
            ContractType::Utf8 => matches!(
                dt,
                DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
            ),
            ContractType::Binary => matches!(
                dt,
                DataType::Binary | DataType::LargeBinary | DataType::BinaryView
            ),
            ContractType::Boolean => matches!(dt, DataType::Boolean),
            ContractType::Integer(_) => dt.is_integer(),
            ContractType::Float(_) => dt.is_floating(),
            ContractType::List(item) => match dt {
                DataType::List(f)
                | DataType::LargeList(f)
                | DataType::ListView(f)
                | DataType::LargeListView(f)
                | DataType::FixedSizeList(f, _) => item.accepts(f.data_type()),
                _ => false,
            },
        }
    }

    /// What counts, in words, for error messages.
    pub fn describe(&self) -> String {
        match self {
            ContractType::Utf8 => "Utf8 (Utf8, LargeUtf8 or Utf8View)".into(),
            ContractType::Binary => "Binary (Binary, LargeBinary or BinaryView)".into(),
            ContractType::Boolean => "Boolean".into(),
            ContractType::Integer(name) => format!("{name} (any integer type)"),
            ContractType::Float(name) => format!("{name} (any floating-point type)"),
            ContractType::List(item) => format!("List<{}>", item.name()),
        }
    }

    fn name(&self) -> String {
        match self {
            ContractType::Utf8 => "Utf8".into(),
            ContractType::Binary => "Binary".into(),
            ContractType::Boolean => "Boolean".into(),
            ContractType::Integer(n) | ContractType::Float(n) => (*n).into(),
            ContractType::List(item) => format!("List<{}>", item.name()),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawField {
    name: String,
    #[serde(rename = "type")]
    ty: String,
    #[serde(default = "yes")]
    required: bool,
    #[serde(default)]
    nullable: bool,
    #[serde(default)]
    doc: String,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawContract {
    name: String,
    #[serde(default)]
    doc: String,
    fields: Vec<RawField>,
}

/// One column of a contract.
#[derive(Debug, Clone)]
pub struct ContractField {
    /// Column name.
    pub name: String,
    /// Accepted type family.
    pub ty: ContractType,
    /// Whether the column must be present (optional columns are checked only when present).
    pub required: bool,
    /// Whether NULL values are allowed (documentation; nullability is a data property).
    pub nullable: bool,
    /// What the column holds.
    pub doc: String,
}

/// A table contract.
#[derive(Debug, Clone)]
pub struct Contract {
    /// Contract name (`pool`, `refined`).
    pub name: String,
    /// What the table is.
    pub doc: String,
    /// The columns.
    pub fields: Vec<ContractField>,
}

/// A way a table breaks its contract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Violation {
    /// A required column is absent.
    Missing {
        /// Column name.
        column: String,
        /// What was expected.
        expected: String,
    },
    /// A column is present with a type outside its family.
    WrongType {
        /// Column name.
        column: String,
        /// What was expected.
        expected: String,
        /// What the table has.
        found: DataType,
    },
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::Missing { column, expected } => {
                write!(f, "column '{column}' is missing (expected {expected})")
            }
            Violation::WrongType {
                column,
                expected,
                found,
            } => {
                write!(
                    f,
                    "column '{column}' has type {found} (expected {expected})"
                )
            }
        }
    }
}

impl Contract {
    /// Parses a contract from its JSON text; `origin` names it in errors.
    pub fn from_json(text: &str, origin: &str) -> Result<Self> {
        let raw: RawContract = serde_json::from_str(text).map_err(|e| {
            DataFusionError::Plan(format!("schema '{origin}' is not a valid contract: {e}"))
        })?;
        let fields = raw
            .fields
            .into_iter()
            .map(|f| {
                let ty = ContractType::parse(&f.ty).map_err(|e| {
                    DataFusionError::Plan(format!("schema '{origin}', column '{}': {e}", f.name))
                })?;
                Ok(ContractField {
                    name: f.name,
                    ty,
                    required: f.required,
                    nullable: f.nullable,
                    doc: f.doc,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Contract {
            name: raw.name,
            doc: raw.doc,
            fields,
        })
    }

    /// The built-in contract `pool` or `refined`, or a contract file at `name_or_path`.
    pub fn load(name_or_path: &str) -> Result<Self> {
        match name_or_path {
            "pool" => Self::from_json(POOL_JSON, "pool"),
            "refined" => Self::from_json(REFINED_JSON, "refined"),
            path => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    DataFusionError::Plan(format!("cannot read schema file '{path}': {e}"))
                })?;
                Self::from_json(&text, path)
            }
        }
    }

    /// Every violation of this contract by `schema`, in contract order; empty when it conforms.
    pub fn check(&self, schema: &Schema) -> Vec<Violation> {
        self.fields
            .iter()
            .filter_map(|field| match schema.field_with_name(&field.name) {
                Ok(actual) if field.ty.accepts(actual.data_type()) => None,
                Ok(actual) => Some(Violation::WrongType {
                    column: field.name.clone(),
                    expected: field.ty.describe(),
                    found: actual.data_type().clone(),
                }),
                Err(_) if field.required => Some(Violation::Missing {
                    column: field.name.clone(),
                    expected: format!("{}: {}", field.ty.describe(), field.doc),
                }),
                Err(_) => None,
            })
            .collect()
    }
}
