//! `_manifest.json`: what a materialization is (query, inputs, models, settings, how the work
//! is split) and how far it got (the finished units and their shards).
//!
//! A rerun compares everything but the progress with the job it is asked to do; any
//! difference is an error that names it, because mixing shards of two different jobs in one
//! directory would give a result that neither job produces.

use serde::{Deserialize, Serialize};

/// The manifest's format version; a manifest of another version is not resumed.
pub const FORMAT: u32 = 1;

/// The whole manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`FORMAT`].
    pub format: u32,
    /// The hqflow version that planned the run.
    pub hqflow_version: String,
    /// The statements file, verbatim (for people; [`Manifest::statements`] is compared).
    pub query: String,
    /// The statements as parsed and printed back, so whitespace and comments do not count.
    pub statements: Vec<String>,
    /// `-s KEY=VALUE` and `--device`, in order.
    pub settings: Vec<Setting>,
    /// Every Parquet table of the session, with its files.
    pub tables: Vec<TableInput>,
    /// Every registered model.
    pub models: Vec<ModelInput>,
    /// How the work is cut into units.
    pub split: Split,
    /// The units whose shards are complete, in the order they finished.
    pub finished: Vec<FinishedUnit>,
}

/// A session setting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Setting {
    /// The key, e.g. `hqflow.device`.
    pub key: String,
    /// The value.
    pub value: String,
}

/// A file's identity as far as a rerun can tell without reading it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileStamp {
    /// The path (absolute for local files, `scheme://bucket/key` for object stores).
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// Last modification, milliseconds since the Unix epoch.
    pub modified_ms: i64,
    /// The object store's entity tag, where it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e_tag: Option<String>,
}

/// A Parquet table the session knows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableInput {
    /// The table's SQL name.
    pub name: String,
    /// Where it is listed from (URLs).
    pub locations: Vec<String>,
    /// The files it reads, sorted by path.
    pub files: Vec<FileStamp>,
}

/// A registered model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelInput {
    /// The name it is registered under.
    pub name: String,
    /// A checkpoint directory or an endpoint URL.
    pub location: String,
    /// A checkpoint directory's files (path relative to it), sorted; empty for an endpoint.
    pub files: Vec<FileStamp>,
    /// The checkpoint's content fingerprint (the model-output cache's), when it has one:
    /// with it, a resume compares contents, so a copied or touched checkpoint still matches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
}

/// How the work is cut into units.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Split {
    /// The table whose rows are split, when the query is row-local in it.
    pub table: Option<String>,
    /// Why the query runs as one unit, when it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub whole_because: Option<String>,
    /// Input rows per unit (`--shard-rows`); also output rows per shard.
    pub shard_rows: u64,
    /// Rows of the split table (0 when the query runs as one unit).
    pub input_rows: u64,
    /// Number of units.
    pub units: u64,
}

/// A unit whose shards are complete.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FinishedUnit {
    /// The unit's number.
    pub unit: u64,
    /// Input rows the unit read from the split table (0 when the query runs as one unit).
    pub rows_in: u64,
    /// Result rows.
    pub rows: u64,
    /// Its shards (none when it has no rows).
    pub shards: Vec<ShardFile>,
    /// Rows of this unit a model function could not compute (NULL in the result), by
    /// function and reason: kept with the unit, so a resumed job reports all of its own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub row_errors: Vec<UnitRowErrors>,
}

/// One (function, reason) count of a unit's failed rows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnitRowErrors {
    /// The SQL function.
    pub function: String,
    /// Why (as the end-of-run summary says it).
    pub reason: String,
    /// How many rows.
    pub rows: u64,
}

impl Manifest {
    /// Failed rows of every finished unit, by function and reason.
    pub fn row_errors(&self) -> Vec<UnitRowErrors> {
        let mut all: std::collections::BTreeMap<(String, String), u64> = Default::default();
        for e in self.finished.iter().flat_map(|u| &u.row_errors) {
            *all.entry((e.function.clone(), e.reason.clone()))
                .or_default() += e.rows;
        }
        all.into_iter()
            .map(|((function, reason), rows)| UnitRowErrors {
                function,
                reason,
                rows,
            })
            .collect()
    }
}

/// A complete shard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardFile {
    /// The file name in the output directory.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// Rows.
    pub rows: u64,
}

impl Manifest {
    /// What differs between the job this manifest describes and `other` (progress aside),
    /// one phrase per difference.
    pub fn differences(&self, other: &Manifest) -> Vec<String> {
        let mut out = Vec::new();
        if self.format != other.format {
            out.push(format!(
                "manifest format {} (this hqflow writes {})",
                self.format, other.format
            ));
        }
        if self.hqflow_version != other.hqflow_version {
            out.push(format!(
                "hqflow version ({} then, {} now)",
                self.hqflow_version, other.hqflow_version
            ));
        }
        if self.statements != other.statements {
            out.push(statements_difference(&self.statements, &other.statements));
        }
        if self.settings != other.settings {
            out.push(format!(
                "settings ({} then, {} now)",
                settings_text(&self.settings),
                settings_text(&other.settings)
            ));
        }
        out.extend(tables_differences(&self.tables, &other.tables));
        out.extend(models_differences(&self.models, &other.models));
        let (a, b) = (&self.split, &other.split);
        if a.shard_rows != b.shard_rows {
            out.push(format!(
                "--shard-rows ({} then, {} now)",
                a.shard_rows, b.shard_rows
            ));
        }
        if a.table != b.table || a.whole_because != b.whole_because {
            out.push(format!(
                "how the work is split ({} then, {} now)",
                split_text(a),
                split_text(b)
            ));
        } else if a.shard_rows == b.shard_rows
            && (a.units != b.units || a.input_rows != b.input_rows)
        {
            out.push(format!(
                "the split table's rows ({} rows in {} units then, {} in {} now)",
                a.input_rows, a.units, b.input_rows, b.units
            ));
        }
        out
    }

    /// Result rows of the finished units.
    pub fn rows(&self) -> u64 {
        self.finished.iter().map(|u| u.rows).sum()
    }

    /// Input rows of the finished units.
    pub fn rows_in(&self) -> u64 {
        self.finished.iter().map(|u| u.rows_in).sum()
    }
}

fn statements_difference(then: &[String], now: &[String]) -> String {
    if then.len() != now.len() {
        return format!(
            "the query ({} statements then, {} now)",
            then.len(),
            now.len()
        );
    }
    let i = then
        .iter()
        .zip(now)
        .position(|(a, b)| a != b)
        .unwrap_or_default();
    format!(
        "the query (statement {}: '{}' then, '{}' now)",
        i + 1,
        short(&then[i]),
        short(&now[i])
    )
}

fn short(text: &str) -> String {
    let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() > 70 {
        one_line.chars().take(69).collect::<String>() + "…"
    } else {
        one_line
    }
}

fn settings_text(settings: &[Setting]) -> String {
    if settings.is_empty() {
        return "none".into();
    }
    settings
        .iter()
        .map(|s| format!("{}={}", s.key, s.value))
        .collect::<Vec<_>>()
        .join(" ")
}

fn split_text(split: &Split) -> String {
    match (&split.table, &split.whole_because) {
        (_, Some(why)) => format!("one unit because {why}"),
        (Some(table), None) => format!("by rows of '{table}'"),
        (None, None) => "one unit".into(),
    }
}

fn tables_differences(then: &[TableInput], now: &[TableInput]) -> Vec<String> {
    let mut out = Vec::new();
    for t in then {
        match now.iter().find(|n| n.name == t.name) {
            None => out.push(format!("table '{}' (gone)", t.name)),
            Some(n) if n.locations != t.locations => out.push(format!(
                "table '{}' (location {} then, {} now)",
                t.name,
                t.locations.join(","),
                n.locations.join(",")
            )),
            Some(n) => {
                if let Some(why) = files_difference(&t.files, &n.files) {
                    out.push(format!("table '{}' ({why})", t.name));
                }
            }
        }
    }
    for n in now {
        if !then.iter().any(|t| t.name == n.name) {
            out.push(format!("table '{}' (new)", n.name));
        }
    }
    out
}

fn models_differences(then: &[ModelInput], now: &[ModelInput]) -> Vec<String> {
    let mut out = Vec::new();
    for m in then {
        match now.iter().find(|n| n.name == m.name) {
            None => out.push(format!("model '{}' (gone)", m.name)),
            Some(n) if n.location != m.location => out.push(format!(
                "model '{}' ({} then, {} now)",
                m.name, m.location, n.location
            )),
            Some(n) => match (&m.fingerprint, &n.fingerprint) {
                (Some(a), Some(b)) if a == b => {}
                (Some(a), Some(b)) => out.push(format!(
                    "model '{}' (its contents changed: fingerprint {a} then, {b} now)",
                    m.name
                )),
                _ => {
                    if let Some(why) = files_difference(&m.files, &n.files) {
                        out.push(format!("model '{}' ({why})", m.name));
                    }
                }
            },
        }
    }
    for n in now {
        if !then.iter().any(|m| m.name == n.name) {
            out.push(format!("model '{}' (new)", n.name));
        }
    }
    out
}

/// The first file that was added, removed or changed.
fn files_difference(then: &[FileStamp], now: &[FileStamp]) -> Option<String> {
    for t in then {
        match now.iter().find(|n| n.path == t.path) {
            None => return Some(format!("file '{}' is gone", t.path)),
            Some(n) if n != t => {
                let what = if n.size != t.size {
                    format!("size {} then, {} now", t.size, n.size)
                } else {
                    "modified since".to_string()
                };
                return Some(format!("file '{}' changed: {what}", t.path));
            }
            Some(_) => {}
        }
    }
    now.iter()
        .find(|n| !then.iter().any(|t| t.path == n.path))
        .map(|n| format!("file '{}' is new", n.path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(path: &str, size: u64) -> FileStamp {
        FileStamp {
            path: path.into(),
            size,
            modified_ms: 1,
            e_tag: None,
        }
    }

    fn manifest() -> Manifest {
        Manifest {
            format: FORMAT,
            hqflow_version: "0.1.0".into(),
            query: "SELECT uid FROM pool".into(),
            statements: vec!["SELECT uid FROM pool".into()],
            settings: vec![],
            tables: vec![TableInput {
                name: "pool".into(),
                locations: vec!["file:///d/".into()],
                files: vec![stamp("/d/a.parquet", 10), stamp("/d/b.parquet", 20)],
            }],
            models: vec![ModelInput {
                name: "tiny".into(),
                location: "/m".into(),
                files: vec![stamp("config.json", 5)],
                fingerprint: None,
            }],
            split: Split {
                table: Some("pool".into()),
                whole_because: None,
                shard_rows: 100,
                input_rows: 1000,
                units: 10,
            },
            finished: vec![],
        }
    }

    #[test]
    fn the_same_job_has_no_differences_whatever_its_progress() {
        let a = manifest();
        let mut b = manifest();
        b.finished.push(FinishedUnit {
            unit: 3,
            rows_in: 100,
            rows: 7,
            shards: vec![],
            row_errors: vec![],
        });
        b.query = "select uid   from pool -- comment".into();
        assert!(a.differences(&b).is_empty());
    }

    #[test]
    fn each_difference_is_named() {
        let a = manifest();
        let mut b = manifest();
        b.statements = vec!["SELECT url FROM pool".into()];
        b.settings.push(Setting {
            key: "hqflow.device".into(),
            value: "cuda".into(),
        });
        b.tables[0].files[1].size = 21;
        b.models[0].files.push(stamp("model.safetensors", 9));
        b.split.shard_rows = 50;
        let d = a.differences(&b).join("; ");
        for needle in [
            "the query (statement 1: 'SELECT uid FROM pool' then, 'SELECT url FROM pool' now)",
            "settings (none then, hqflow.device=cuda now)",
            "table 'pool' (file '/d/b.parquet' changed: size 20 then, 21 now)",
            "model 'tiny' (file 'model.safetensors' is new)",
            "--shard-rows (100 then, 50 now)",
        ] {
            assert!(d.contains(needle), "{d:?} lacks {needle:?}");
        }
    }

    #[test]
    fn model_fingerprints_decide_over_file_stamps() {
        let mut a = manifest();
        a.models[0].fingerprint = Some("f1".into());
        let mut b = a.clone();
        // Touched or copied: other stamps, same contents.
        b.models[0].files[0].modified_ms += 1000;
        assert!(a.differences(&b).is_empty());
        b.models[0].fingerprint = Some("f2".into());
        let d = a.differences(&b).join("; ");
        assert!(d.contains("model 'tiny' (its contents changed"), "{d}");
    }

    #[test]
    fn tables_added_removed_and_regrown_are_named() {
        let a = manifest();
        let mut b = manifest();
        b.tables[0].files.remove(0);
        b.tables.push(TableInput {
            name: "dims".into(),
            locations: vec![],
            files: vec![],
        });
        b.split.input_rows = 500;
        b.split.units = 5;
        let d = a.differences(&b).join("; ");
        assert!(
            d.contains("table 'pool' (file '/d/a.parquet' is gone)"),
            "{d}"
        );
        assert!(d.contains("table 'dims' (new)"), "{d}");
        assert!(
            d.contains("1000 rows in 10 units then, 500 in 5 now"),
            "{d}"
        );
    }

    #[test]
    fn round_trips_through_json() {
        let mut a = manifest();
        a.finished.push(FinishedUnit {
            unit: 0,
            rows_in: 100,
            rows: 3,
            shards: vec![ShardFile {
                name: "part-00000-000.parquet".into(),
                size: 123,
                rows: 3,
            }],
            row_errors: vec![UnitRowErrors {
                function: "dfn_score".into(),
                reason: "not an image".into(),
                rows: 2,
            }],
        });
        a.finished.push(FinishedUnit {
            unit: 1,
            rows_in: 100,
            rows: 0,
            shards: vec![],
            row_errors: vec![UnitRowErrors {
                function: "dfn_score".into(),
                reason: "not an image".into(),
                rows: 1,
            }],
        });
        let text = serde_json::to_string_pretty(&a).expect("serializes");
        let b: Manifest = serde_json::from_str(&text).expect("parses");
        assert_eq!(a, b);
        assert_eq!(b.rows(), 3);
        assert_eq!(b.rows_in(), 200);
        let errors = b.row_errors();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].rows, 3);
    }
}
